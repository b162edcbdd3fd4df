/** The channels an acceptor serves: name, handler, authorise hook and the ACCEPT frame, encoded once. */
import type { Buffer } from 'node:buffer';
import { PnetError } from '../errors.js';
import { EMPTY_METADATA, encodeAccept, isValidChannelName, type Metadata } from './codec.js';
import { NegotiationScope, type NegotiationStats } from './limits.js';
import type { ChannelHandler, ChannelRegistration, RegisterOptions } from './types.js';

/** @internal registration plus its pre-encoded ACCEPT frame. */
export interface RegistrationRecord extends ChannelRegistration {
  readonly acceptFrame: Buffer;
}

/** @internal the negotiations in progress, by peer, shared by acceptChannel calls on one registry. */
export const kScope: unique symbol = Symbol('pnet.channel.scope');
/** @internal */
export const kLookup: unique symbol = Symbol('pnet.channel.lookup');

export class ChannelRegistry {
  private readonly channels = new Map<string, RegistrationRecord>();
  /** @internal */
  readonly [kScope] = new NegotiationScope();

  /** Negotiations currently in progress (read OPEN / authorise) on this registry. */
  get pendingNegotiations(): number {
    return this[kScope].pending;
  }

  /**
   * What acceptChannel did on this registry: gauges (pending, by how many peers) and a counter
   * per outcome, every refusal included (per-peer share, node cap, evictions, deadlines, bad frames).
   */
  negotiationStats(): NegotiationStats {
    return this[kScope].stats();
  }

  register(name: string, handler: ChannelHandler, options: RegisterOptions = {}): void {
    if (!isValidChannelName(name)) {
      throw new PnetError(
        'ERR_BAD_OPTION',
        `invalid channel name ${JSON.stringify(String(name)).slice(0, 80)}: 1..64 of [a-z0-9._/-], starting with [a-z0-9]`,
      );
    }
    if (typeof handler !== 'function') throw new PnetError('ERR_BAD_OPTION', 'channel handler must be a function');
    if (options.authorise !== undefined && typeof options.authorise !== 'function') {
      throw new PnetError('ERR_BAD_OPTION', 'authorise must be a function');
    }
    if (this.channels.has(name)) throw new PnetError('ERR_CHANNEL_REGISTERED', `channel "${name}" is already registered`);
    let metadata: Metadata = EMPTY_METADATA;
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      metadata = Object.freeze(Object.assign(Object.create(null) as Record<string, string>, options.metadata));
    }
    const acceptFrame = encodeAccept(metadata); // validates metadata (ERR_BAD_OPTION)
    this.channels.set(name, { name, handler, authorise: options.authorise, metadata, acceptFrame });
  }

  /** Returns true if the channel was registered. Streams already accepted are not affected. */
  unregister(name: string): boolean {
    return this.channels.delete(name);
  }

  get(name: string): ChannelRegistration | undefined {
    const r = this.channels.get(name);
    return r === undefined ? undefined : { name: r.name, handler: r.handler, authorise: r.authorise, metadata: r.metadata };
  }

  has(name: string): boolean {
    return this.channels.has(name);
  }

  names(): string[] {
    return [...this.channels.keys()];
  }

  /** @internal */
  [kLookup](name: string): RegistrationRecord | undefined {
    return this.channels.get(name);
  }
}
