import type { EventEmitter } from 'node:events';

/**
 * Delivers a connection's incoming streams as 'stream' events. A peer can be quicker than the
 * application's 'connection' handler: streams that arrive before anyone listens are held and
 * delivered, in order, once a 'stream' listener is added.
 */
export class StreamInbox<S extends { readonly destroyed: boolean }> {
  private readonly held: S[] = [];
  private readonly connection: EventEmitter;

  constructor(connection: EventEmitter) {
    this.connection = connection;
    connection.on('newListener', (event: string | symbol) => {
      if (event === 'stream' && this.held.length > 0) queueMicrotask(this.release);
    });
  }

  deliver(stream: S): void {
    if (this.connection.listenerCount('stream') === 0) this.held.push(stream);
    else this.connection.emit('stream', stream);
  }

  private readonly release = (): void => {
    for (const stream of this.held.splice(0)) {
      if (!stream.destroyed) this.connection.emit('stream', stream);
    }
  };
}
