/**
 * The one place quiche errors are told apart. The binding throws plain Errors whose message is
 * the quiche error's name, with the stream error code in parentheses where there is one
 * (`StreamReset(7)`, `StreamStopped(7)`, `InvalidStreamState(4)`); test/quic-errors.test.ts pins
 * those strings with real quiche calls.
 */
export type QuicheError =
  | { readonly kind: 'StreamReset'; readonly code: number }
  | { readonly kind: 'StreamStopped'; readonly code: number }
  | { readonly kind: 'InvalidStreamState'; readonly streamId: number }
  | { readonly kind: 'StreamLimit' | 'Done' | 'TlsFail' | 'InvalidState' | 'BufferTooShort' | 'FlowControl' | 'FinalSize' | 'InvalidPacket' }
  | { readonly kind: 'Other'; readonly text: string };

const SIMPLE = new Set(['StreamLimit', 'Done', 'TlsFail', 'InvalidState', 'BufferTooShort', 'FlowControl', 'FinalSize', 'InvalidPacket']);
const WITH_NUMBER = /^(StreamReset|StreamStopped|InvalidStreamState)\((\d+)\)$/;

/** What a thrown quiche error means. */
export function classifyQuicheError(error: unknown): QuicheError {
  const text = (error instanceof Error ? error.message : String(error)).trim();
  const numbered = WITH_NUMBER.exec(text);
  if (numbered) {
    const value = Number(numbered[2]);
    if (numbered[1] === 'InvalidStreamState') return { kind: 'InvalidStreamState', streamId: value };
    return { kind: numbered[1] as 'StreamReset' | 'StreamStopped', code: value };
  }
  if (SIMPLE.has(text)) return { kind: text as 'StreamLimit' };
  return { kind: 'Other', text };
}

/** Whether `error` is quiche's `kind`. */
export function isQuicheError(error: unknown, kind: QuicheError['kind']): boolean {
  return classifyQuicheError(error).kind === kind;
}
