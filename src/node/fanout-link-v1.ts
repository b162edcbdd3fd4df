/**
 * A fan-out leg on a stream of its own (version 1), and what a sent leg reports to its fan-out,
 * whichever way it went: on a link (fanout-link.ts) or alone (a peer without links).
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { UpFrameReader, type UpFrame } from './fanout-codec.js';

/** Where a leg's upstream goes: frames as they come, then one close (normal end, or why it failed). */
export interface LegSink {
  frames(frames: readonly UpFrame[]): void;
  /** The leg is over; the cause is built only if answers are missing (a lazy one costs nothing). */
  closed(cause: Error | (() => Error)): void;
}

export interface LegHandle {
  /** The sender gives the leg up (its fan-out ended): nothing more is reported. */
  cancel(): void;
}

/** A stream on the fan-out channel: the peer's ACCEPT metadata once negotiated. */
export type LegStream = Duplex & { readonly remoteMetadata?: Readonly<Record<string, string>> };

/**
 * A version-1 leg: a stream of its own, the leg written and ended, frames read until the end.
 * `leg` undefined: the leg was written already (a version 3 lead the peer read as v1); `early`:
 * bytes the stream delivered before this reader was attached.
 */
export function sendV1Leg(opened: Promise<Duplex>, hop: NodeId, leg: Buffer | undefined, maxFrameBytes: number, sink: LegSink, early: readonly Buffer[] = []): LegHandle {
  let stream: Duplex | undefined;
  let over = false;
  const close = (cause: Error | (() => Error)): void => {
    if (over) return;
    over = true;
    sink.closed(cause);
  };
  opened.then(
    (opened) => {
      if (over) return void opened.destroy();
      stream = opened;
      const reader = new UpFrameReader(maxFrameBytes);
      const onData = (chunk: Buffer): void => {
        if (over) return;
        let frames: UpFrame[];
        try {
          frames = reader.push(chunk);
        } catch (error) {
          opened.destroy();
          return close(error as Error);
        }
        sink.frames(frames);
      };
      for (const chunk of early) onData(chunk);
      opened.on('data', onData);
      opened.on('error', (error: Error) => close(error));
      // The error is made only if answers are missing: a leg's normal end builds no Error (a stack trace per target).
      opened.on('end', () => close(() => new PnetError('ERR_STREAM_RESET', `${hop} ended its leg with answers missing`)));
      opened.on('close', () => close(() => new PnetError('ERR_STREAM_RESET', `leg to ${hop} closed with answers missing`)));
      if (leg === undefined) opened.end();
      else opened.end(leg);
    },
    (error: Error) => close(error),
  );
  return {
    cancel: () => {
      over = true;
      stream?.destroy();
    },
  };
}
