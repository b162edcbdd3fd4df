/**
 * One TLS context per identity: its key, certificate and TLS 1.3 floor. Building a context
 * parses the PEM key and certificate again (~1.3 ms here), which every HTTP/2 dial and every
 * relayed tunnel paid before (a leaf process redialing its hub over HTTP/2 spent a tenth of its
 * CPU on it: docs/TRANSPORT.md).
 */
import tls from 'node:tls';
import type { Identity } from '../identity/index.js';

const contexts = new WeakMap<Identity, tls.SecureContext>();

/** The identity's TLS context, made on first use and shared by every socket after. */
export function secureContextFor(identity: Identity): tls.SecureContext {
  let context = contexts.get(identity);
  if (context === undefined) {
    context = tls.createSecureContext({ key: identity.keyPem, cert: identity.certPem, minVersion: 'TLSv1.3' });
    contexts.set(identity, context);
  }
  return context;
}
