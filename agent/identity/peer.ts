// The SPIFFE ID of a TLS peer, read from its (already chain-verified) certificate.
//
// The DER is parsed rather than Node's `subjectaltname` string: that string is a display format
// (entries joined by ", ", some values JSON-quoted), and a crafted DNS SAN can imitate a URI entry
// in it. The rule is SPIFFE's: exactly one URI SAN, and it must be a valid identity.

import type { X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { IdentityError } from './errors.ts';
import { isSpiffeId } from './spiffe.ts';
import { x509 } from '../../api/x509.ts';

/** The peer's SPIFFE ID; throws IdentityError PEER_IDENTITY_INVALID when there is none. */
export function peerSpiffeId(socket: TLSSocket): string {
  const certificate = socket.getPeerX509Certificate();
  if (!certificate) throw new IdentityError('PEER_IDENTITY_INVALID', 'peer presented no certificate');
  return spiffeIdOfCertificate(certificate);
}

/** The one SPIFFE URI SAN of a certificate (Node's X509Certificate or DER bytes). */
export function spiffeIdOfCertificate(certificate: NodeX509Certificate | Uint8Array): string {
  const der = certificate instanceof Uint8Array ? certificate : certificate.raw;
  let uris: string[];
  try {
    const parsed = new x509.X509Certificate(der);
    const extensions = parsed.getExtensions(x509.SubjectAlternativeNameExtension);
    if (extensions.length !== 1) {
      throw new IdentityError('PEER_IDENTITY_INVALID', `certificate has ${extensions.length} SAN extensions, expected 1`);
    }
    uris = (extensions[0] as InstanceType<typeof x509.SubjectAlternativeNameExtension>).names.items
      .filter((name) => name.type === 'url')
      .map((name) => name.value);
  } catch (err) {
    if (err instanceof IdentityError) throw err;
    throw new IdentityError('PEER_IDENTITY_INVALID', 'certificate SAN extension cannot be parsed', { cause: err });
  }
  if (uris.length !== 1) {
    throw new IdentityError('PEER_IDENTITY_INVALID', `certificate has ${uris.length} URI SANs, expected exactly 1`);
  }
  const uri = uris[0] as string;
  if (!isSpiffeId(uri)) throw new IdentityError('PEER_IDENTITY_INVALID', `certificate URI SAN ${JSON.stringify(uri)} is not a SPIFFE ID`);
  return uri;
}
