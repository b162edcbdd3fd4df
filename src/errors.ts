/**
 * Every error pnet throws or emits is a PnetError with a stable `code`.
 * Codes are part of the public API (listed in README.md); messages are not.
 */
export type PnetErrorCode =
  // identity
  | 'ERR_KEY_FILE'
  | 'ERR_BAD_NODE_ID'
  | 'ERR_PEER_CERTIFICATE'
  // transport
  | 'ERR_PEER_ID_MISMATCH'
  | 'ERR_HANDSHAKE'
  | 'ERR_CONNECT_TIMEOUT'
  | 'ERR_CONNECTION_REFUSED'
  | 'ERR_CONNECTION_CLOSED'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_STREAM_RESET'
  | 'ERR_STREAM_LIMIT'
  | 'ERR_TRANSPORT_CLOSED'
  | 'ERR_BAD_ADDRESS'
  | 'ERR_CONNECTION_LIMIT'
  // channel
  | 'UNKNOWN_CHANNEL'
  | 'UNAUTHORIZED'
  | 'BAD_FRAME'
  | 'VERSION'
  | 'OVERLOADED'
  // relay (also REJECT codes)
  | 'UNREACHABLE'
  | 'HOP_LIMIT'
  | 'RELAY_REFUSED'
  | 'ERR_CHANNEL_REGISTERED'
  // node
  | 'ERR_REQUEST_TIMEOUT'
  | 'ERR_REQUEST_TOO_LARGE'
  | 'ERR_ROUTING_MESSAGE_TOO_LARGE'
  | 'ERR_NODE_CLOSED'
  | 'ERR_BAD_OPTION'
  // fan-out (per-target results)
  | 'ERR_HANDLER_FAILED'
  | 'ERR_STALE_REQUEST'
  | 'ERR_DUPLICATE_REQUEST'
  // cli / ops service
  | 'ERR_CONFIG'
  | 'ERR_COMMAND_REFUSED';

export class PnetError extends Error {
  readonly code: PnetErrorCode;
  /** ERR_STREAM_RESET from a peer's reset: the code it gave (`stream.reset(code)`). */
  readonly resetCode?: number;
  constructor(code: PnetErrorCode, message: string, options?: { cause?: unknown; resetCode?: number }) {
    super(message, options);
    this.code = code;
    if (options?.resetCode !== undefined) this.resetCode = options.resetCode;
    this.name = new.target.name;
  }
}
