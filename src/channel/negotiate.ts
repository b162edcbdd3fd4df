/**
 * Sans-IO negotiation state machines: fed bytes, they return what happened
 * (and, for the acceptor, the exact bytes to answer). No streams, no timers.
 */
import { Buffer } from 'node:buffer';
import { PnetError } from '../errors.js';
import {
  FrameReader,
  HEADER_LENGTH,
  SUPPORTED_VERSIONS,
  encodeReject,
  type ChannelRejectCode,
  type Metadata,
  type OpenFrame,
} from './codec.js';

/** The opener's stream failed because the acceptor answered REJECT. */
export class ChannelRejectedError extends PnetError {
  declare readonly code: ChannelRejectCode;
  /** The acceptor's human-readable reason (≤ 256 bytes, may be empty). */
  readonly reason: string;
  constructor(code: ChannelRejectCode, reason: string) {
    super(code, reason === '' ? `channel rejected: ${code}` : `channel rejected: ${code}: ${reason}`);
    this.reason = reason;
  }
}

export type OpenerOutcome =
  /** ACCEPT arrived; `rest` is the first payload bytes after it (possibly empty). */
  | { readonly type: 'accepted'; readonly metadata: Metadata; readonly rest: Buffer }
  /**
   * The channel is not usable: a ChannelRejectedError for a REJECT, or a local
   * PnetError BAD_FRAME (garbage / unexpected frame), VERSION (answer in a
   * version we do not speak) or ERR_STREAM_RESET (EOF before the answer).
   */
  | { readonly type: 'failed'; readonly error: PnetError };

const NO_REST = Buffer.alloc(0);

/** Opener side: awaiting ACCEPT or REJECT. */
export class OpenerNegotiation {
  private readonly reader = new FrameReader();
  private outcome: OpenerOutcome | undefined;

  get settled(): boolean {
    return this.outcome !== undefined;
  }

  /** Feed received bytes; null until the outcome is known. */
  push(chunk: Buffer): OpenerOutcome | null {
    if (this.outcome !== undefined) return this.outcome;
    let got;
    try {
      got = this.reader.push(chunk);
    } catch (err) {
      return (this.outcome = { type: 'failed', error: err as PnetError });
    }
    if (got === null) return null;
    const f = got.frame;
    switch (f.type) {
      case 'accept':
        // `rest` (a view of the chunk) is handed over once and not kept: kept, it pinned the whole read pool for the channel's life.
        this.outcome = { type: 'accepted', metadata: f.metadata, rest: NO_REST };
        return { type: 'accepted', metadata: f.metadata, rest: got.rest };
      case 'reject':
        return (this.outcome = { type: 'failed', error: new ChannelRejectedError(f.code, f.reason) });
      case 'unsupported-version':
        return (this.outcome = {
          type: 'failed',
          error: new PnetError('VERSION', `acceptor answered with unsupported protocol version ${f.version}`),
        });
      default:
        return (this.outcome = { type: 'failed', error: new PnetError('BAD_FRAME', 'acceptor sent OPEN instead of ACCEPT/REJECT') });
    }
  }

  /** The stream ended (EOF) before the outcome was known. */
  end(): OpenerOutcome {
    if (this.outcome !== undefined) return this.outcome;
    return (this.outcome = {
      type: 'failed',
      error: new PnetError('ERR_STREAM_RESET', 'stream ended before ACCEPT or REJECT'),
    });
  }
}

export type AcceptorOutcome =
  /** A well-formed OPEN; `rest` is the optimistic payload received with it. */
  | { readonly type: 'open'; readonly frame: OpenFrame; readonly rest: Buffer }
  /** Malformed input or unsupported version: send `reply` (a REJECT frame), then close. */
  | { readonly type: 'reject'; readonly code: 'BAD_FRAME' | 'VERSION'; readonly reason: string; readonly reply: Buffer };

/**
 * Acceptor side: awaiting OPEN. The stream glue (acceptChannel) feeds it exactly `wanted` bytes at
 * a time, so the payload behind the OPEN never leaves the stream's buffer; `rest` is then empty.
 */
export class AcceptorNegotiation {
  private readonly reader = new FrameReader();
  private outcome: AcceptorOutcome | undefined;

  /** Bytes that would complete the header or the OPEN (0 once the outcome is known). */
  get wanted(): number {
    return this.outcome === undefined ? this.reader.wanted : 0;
  }

  push(chunk: Buffer): AcceptorOutcome | null {
    if (this.outcome !== undefined) return this.outcome;
    let got;
    try {
      got = this.reader.push(chunk);
    } catch (err) {
      return (this.outcome = reject('BAD_FRAME', (err as Error).message));
    }
    if (got === null) return null;
    const f = got.frame;
    if (f.type === 'open') return (this.outcome = { type: 'open', frame: f, rest: got.rest });
    if (f.type === 'unsupported-version') return (this.outcome = reject('VERSION', versionReason(f.version)));
    return (this.outcome = reject('BAD_FRAME', `expected OPEN, got ${f.type.toUpperCase()}`));
  }

  /** The stream ended before a whole OPEN arrived. */
  end(): AcceptorOutcome {
    if (this.outcome !== undefined) return this.outcome;
    return (this.outcome = reject('BAD_FRAME', 'stream ended before a complete OPEN'));
  }

  /** The deadline of `ms` passed before a whole OPEN arrived (the caller keeps the clock). */
  timeout(ms: number): AcceptorOutcome {
    if (this.outcome !== undefined) return this.outcome;
    return (this.outcome = reject('BAD_FRAME', `no complete OPEN within ${ms} ms`));
  }

  /** True once the 4-byte header is in (or the outcome is known): the header deadline no longer applies. */
  get headerReceived(): boolean {
    return this.outcome !== undefined || this.reader.bufferedBytes >= HEADER_LENGTH;
  }

  /** The header deadline of `ms` passed with fewer than 4 bytes in (slowloris); no-op once the header is in. */
  headerTimeout(ms: number): AcceptorOutcome | null {
    if (this.outcome !== undefined) return this.outcome;
    if (this.headerReceived) return null;
    return (this.outcome = reject('BAD_FRAME', `no OPEN header within ${ms} ms`));
  }
}

function versionReason(version: number): string {
  return `protocol version ${version} not supported; supported: ${SUPPORTED_VERSIONS.join(',')}`;
}

function reject(code: 'BAD_FRAME' | 'VERSION', reason: string): AcceptorOutcome {
  return { type: 'reject', code, reason, reply: encodeReject(code, reason) };
}
