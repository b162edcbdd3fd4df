/** What the scheduler runs: a QUIC connection's driver. */
export interface Drivable {
  /** service(), events, transmit as the machine asks, timer (machine.ts, call order). */
  drive(): void;
  /** Drains the machine's datagrams onto the path now. */
  transmit(): void;
  readonly closed: boolean;
}

/**
 * When the QUIC drivers of one endpoint run: batched per loop turn (one setImmediate for every
 * connection that had datagrams or writes), after this tick's nextTicks (one microtask), or
 * two loop turns later for ACK-only transmits (an answer written in the next turn carries the
 * ACK; any earlier transmit or datagram in sends it sooner). Timing lives here and in
 * QuicConnection, never in the machine.
 */
export class Scheduler {
  private readonly dirty = new Set<Drivable>();
  private batchScheduled = false;
  private readonly nextTurn = new Set<Drivable>();
  /** ACK-only transmits asked for a turn ago: sent this turn unless a drive of this turn's batch is due. */
  private readonly ackDue = new Set<Drivable>();
  private nextTurnScheduled = false;
  private readonly afterTicks = new Set<Drivable>();

  /** Drive `connection` in the next batch (after the current burst of datagrams and writes). */
  schedule(connection: Drivable): void {
    this.dirty.add(connection);
    if (!this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(this.runBatch);
    }
  }

  /** ACK-only transmit in two loop turns (or earlier, when something else transmits first: `transmitted`). */
  transmitNextTurn(connection: Drivable): void {
    this.nextTurn.add(connection);
    if (!this.nextTurnScheduled) {
      this.nextTurnScheduled = true;
      setImmediate(this.runNextTurn);
    }
  }

  /** Transmit once the current tick's nextTicks ran (before any I/O). */
  transmitAfterTicks(connection: Drivable): void {
    if (this.afterTicks.size === 0) queueMicrotask(this.runAfterTicks);
    this.afterTicks.add(connection);
  }

  /** `connection` just transmitted: a pending next-turn transmit has nothing left to do. */
  transmitted(connection: Drivable): void {
    this.nextTurn.delete(connection);
    this.ackDue.delete(connection);
  }

  forget(connection: Drivable): void {
    this.dirty.delete(connection);
    this.nextTurn.delete(connection);
    this.ackDue.delete(connection);
    this.afterTicks.delete(connection);
  }

  private readonly runBatch = (): void => {
    this.batchScheduled = false;
    const dirty = this.dirty;
    while (dirty.size > 0) {
      for (const connection of dirty) {
        dirty.delete(connection);
        connection.drive();
      }
    }
  };

  /**
   * Two stages, one turn each: a reply to what was just read is usually written in the next turn
   * (a setImmediate of the application, a thread-pool job), after this immediate; it then carries
   * the ACK. A connection whose drive is due in this turn's batch transmits there (or asks again).
   */
  private readonly runNextTurn = (): void => {
    this.nextTurnScheduled = false;
    const due = this.ackDue;
    for (const connection of due) if (!this.dirty.has(connection)) connection.transmit();
    due.clear();
    for (const connection of this.nextTurn) due.add(connection);
    this.nextTurn.clear();
    if (due.size > 0) {
      this.nextTurnScheduled = true;
      setImmediate(this.runNextTurn);
    }
  };

  private readonly runAfterTicks = (): void => {
    for (const connection of this.afterTicks) {
      if (!connection.closed) connection.transmit();
    }
    this.afterTicks.clear();
  };
}
