// Weft workload certificates issued from ztunnel's test root (src/tls/root-cert.pem and
// ca-key.pem in its source tree), the root its FAKE_CA signs with, so that a Weft HBONE endpoint
// and a ztunnel trust each other in the bench's interop check. Weft's own CA issues only from a
// P-256 root; this root is RSA, so the leaf is built here, with the extensions Weft's CA gives
// (controller/ca/sign.ts), and then checked by the agent's WorkloadCertificate like any other.

import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { x509 } from '../../api/x509.ts';
import { WorkloadCertificate } from '../../agent/identity/certificate.ts';
import { generateKeyAndCsr } from '../../agent/identity/csr.ts';

const RSA_SHA256 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;

export async function issueFromZtunnelRoot(ztunnelSrc: string, identity: string): Promise<WorkloadCertificate> {
  const rootPem = await readFile(join(ztunnelSrc, 'src/tls/root-cert.pem'), 'utf8');
  const rootKeyPem = await readFile(join(ztunnelSrc, 'src/tls/ca-key.pem'), 'utf8');
  const root = new x509.X509Certificate(rootPem);
  const pkcs8 = createPrivateKey(rootKeyPem).export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, RSA_SHA256, false, ['sign']);

  const { keyPem, csrPem } = await generateKeyAndCsr(identity);
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  const now = Date.now();
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: '',
    // The root's own encoded name: webpki (ztunnel) matches issuer to subject byte for byte, and a
    // string would be re-encoded as PrintableString where this root has UTF8String.
    issuer: root.subjectName,
    notBefore: new Date(now - 5 * 60 * 1000),
    notAfter: new Date(now + 24 * 60 * 60 * 1000),
    signingAlgorithm: RSA_SHA256,
    publicKey: csr.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true),
    ],
  });
  return WorkloadCertificate.fromIssued({ identity, keyPem, chainPem: leaf.toString('pem'), trustBundlePem: rootPem });
}
