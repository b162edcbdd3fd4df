/**
 * pnet channel layer: per-stream ALPN-like negotiation (OPEN / ACCEPT /
 * REJECT). This file is the only public entry point of src/channel; the wire
 * format is specified in docs/PROTOCOL.md.
 */
export {
  PROTOCOL_VERSION,
  SUPPORTED_VERSIONS,
  HEADER_LENGTH,
  MAX_FRAME_LENGTH,
  MAX_BODY_LENGTH,
  MAX_CHANNEL_NAME_LENGTH,
  MAX_METADATA_ENTRIES,
  MAX_METADATA_KEY_LENGTH,
  MAX_METADATA_VALUE_LENGTH,
  MAX_CREDENTIALS_LENGTH,
  MAX_REASON_LENGTH,
  TYPE_OPEN,
  TYPE_ACCEPT,
  TYPE_REJECT,
  REJECT_CODE_VALUES,
  EMPTY_METADATA,
  isValidChannelName,
  isChannelRejectCode,
  encodeOpen,
  encodeAccept,
  encodeReject,
  tryDecodeFrame,
  FrameReader,
  type Metadata,
  type ChannelRejectCode,
  type OpenFields,
  type OpenFrame,
  type AcceptFrame,
  type RejectFrame,
  type UnsupportedVersionFrame,
  type Frame,
} from './codec.js';
export {
  ChannelRejectedError,
  OpenerNegotiation,
  AcceptorNegotiation,
  type OpenerOutcome,
  type AcceptorOutcome,
} from './negotiate.js';
export { ChannelRegistry } from './registry.js';
export type {
  ChannelRequestInfo,
  ChannelHandler,
  AuthoriseHook,
  AuthoriseVerdict,
  RegisterOptions,
  ChannelRegistration,
  ChannelStream,
  ChannelAccepted,
  OpenChannelOptions,
  AcceptChannelOptions,
  AcceptResult,
} from './types.js';
export { openChannel } from './opener.js';
export {
  acceptChannel,
  DEFAULT_OPEN_TIMEOUT_MS,
  DEFAULT_MAX_PENDING,
  DEFAULT_MAX_PENDING_PER_PEER,
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_LINGER_MS,
} from './acceptor.js';
export type { NegotiationStats, NegotiationOutcome } from './limits.js';
export { NEGOTIATION_OUTCOMES } from './limits.js';
