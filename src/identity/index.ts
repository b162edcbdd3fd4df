/**
 * pnet identity layer: Ed25519 node keys, node ids, self-signed certificates
 * and peer certificate verification. This file is the only public entry point
 * of src/identity; see docs/IDENTITY.md for the node id encoding.
 */
export {
  type NodeId,
  NODE_ID_LENGTH,
  nodeIdFromPublicKey,
  parseNodeId,
  isNodeId,
  publicKeyFromNodeId,
  nodeIdToBytes,
} from './node-id.js';
export { Identity, type IdentityOptions, DEFAULT_VALIDITY_DAYS } from './identity.js';
export { verifySignature, verifySignatureAsync } from './signature.js';
export { loadOrCreateIdentity, saveIdentity } from './key-file.js';
export { verifyPeerCertificate, certificateDerFromPem } from './peer-certificate.js';
