/**
 * Bytes that peers' reads hold at this node (requests being read, fan-out legs buffering): a node
 * budget and a smaller per-peer share (docs/LIMITS.md). Past its share a peer's read is refused.
 * Past the node budget, the peer holding the most loses its largest cuttable read when it holds
 * more than the newcomer would; else the newcomer's read is refused. Sans-IO: the owner charges
 * each chunk as it arrives and frees a read's bytes when it ends.
 */
import type { NodeId } from '../identity/index.js';
import { heaviestOther } from '../shares.js';

/** One read's bytes; `cut` ends it (an eviction). */
export interface ByteRead {
  readonly peer: NodeId;
  bytes: number;
  cut(): void;
}

/** What a charge did: taken, or refused over the peer's share or at the node budget. */
export type ChargeOutcome = 'ok' | 'peer' | 'node';

interface Account<R> {
  bytes: number;
  readonly reads: Set<R>;
}

export class ByteShares<R extends ByteRead> {
  /** Reads of heavier peers cut for a lighter peer's (monotonic). */
  evicted = 0;
  private held = 0;
  private readonly accounts = new Map<NodeId, Account<R>>();

  constructor(
    private readonly maxBytes: number,
    private readonly maxBytesPerPeer: number,
    /** Whether a read may be cut for another peer's (a request whose handler runs may not). */
    private readonly cuttable: (read: R) => boolean = () => true,
  ) {}

  /** Bytes held now, all peers together. */
  get heldBytes(): number {
    return this.held;
  }

  /** Adds `n` bytes to `read`; refused: the caller ends the read and calls done(). */
  charge(read: R, n: number): ChargeOutcome {
    let account = this.accounts.get(read.peer);
    if (account === undefined) this.accounts.set(read.peer, (account = { bytes: 0, reads: new Set() }));
    account.reads.add(read);
    if (account.bytes + n > this.maxBytesPerPeer) return 'peer';
    while (this.held + n > this.maxBytes) {
      const victim = this.heaviestOther(read.peer, account.bytes + n);
      if (victim === undefined) return 'node';
      this.evicted++;
      this.done(victim);
      victim.cut();
    }
    read.bytes += n;
    account.bytes += n;
    this.held += n;
    return 'ok';
  }

  /** The read ended (finished, failed or cut): its bytes are freed. */
  done(read: R): void {
    const account = this.accounts.get(read.peer);
    if (account === undefined || !account.reads.delete(read)) return;
    account.bytes -= read.bytes;
    this.held -= read.bytes;
    read.bytes = 0;
    if (account.reads.size === 0) this.accounts.delete(read.peer);
  }

  /** The largest cuttable read of the peer holding the most, if that peer holds more than `holds`. */
  private heaviestOther(peer: NodeId, holds: number): R | undefined {
    const heaviest = heaviestOther(this.accounts, peer, (account) => account.bytes);
    if (heaviest === undefined || heaviest.weight <= holds) return undefined;
    let largest: R | undefined;
    for (const read of heaviest.group.reads) if (this.cuttable(read) && (largest === undefined || read.bytes > largest.bytes)) largest = read;
    return largest;
  }
}
