// The controller's own serving certificate for the agent API, issued by the mesh root.
//
// Agents verify the controller with the mesh trust bundle they already hold (no second CA to
// distribute), by DNS name (the Service name they dial) and, where they check it, by the SPIFFE ID
// `spiffe://<td>/ns/<install-ns>/sa/weft-controller`. The mesh CA's workload path issues URI-only
// certificates, hence this small issuer of its own; the key is generated here and never leaves
// the process.
import { isIP } from 'node:net';
import { webcrypto } from 'node:crypto';
import { ECDSA_P256, randomSerialNumber, toPem } from '../ca/root.ts';
import type { CaRoot } from '../ca/root.ts';
import { x509 } from '../../api/x509.ts';

export interface ServingCertOptions {
  spiffeId: string;
  /** DNS names and IP addresses agents dial. */
  hosts: string[];
  /** Lifetime; 24 h by default, like workload certificates. */
  ttlMs?: number;
  now?: Date;
}

export interface ServingCert {
  /** Leaf (the root is in the agents' trust bundle already). */
  certPem: string;
  /** PKCS#8; for the TLS server only, never logged or written by the controller. */
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** The default DNS names of the controller Service in its install namespace. */
export function controllerHostnames(installNamespace: string, clusterDomain = 'cluster.local'): string[] {
  const svc = 'weft-controller';
  return [svc, `${svc}.${installNamespace}`, `${svc}.${installNamespace}.svc`, `${svc}.${installNamespace}.svc.${clusterDomain}`];
}

export async function issueServingCert(root: CaRoot, opts: ServingCertOptions): Promise<ServingCert> {
  const now = (opts.now ?? new Date()).getTime();
  const notBefore = new Date(now - 5 * 60_000);
  const notAfter = new Date(Math.min(now + (opts.ttlMs ?? 24 * 60 * 60_000), root.certificate.notAfter.getTime()));
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const names = [
    { type: 'url' as const, value: opts.spiffeId },
    ...opts.hosts.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    issuer: root.certificate.subjectName,
    subject: '',
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: root.signingKey,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      // Empty subject: the names are in the SAN, which RFC 5280 then requires to be critical.
      new x509.SubjectAlternativeNameExtension(names, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(root.keyId),
    ],
  });
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem'), keyPem: toPem('PRIVATE KEY', pkcs8), notBefore, notAfter };
}
