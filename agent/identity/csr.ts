// A fresh key and a PKCS#10 request for one workload identity. A new key is made for every
// renewal, so a certificate's key never outlives it by more than one lifetime.

import { webcrypto } from 'node:crypto';
import { x509 } from '../../api/x509.ts';

const P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

export type KeyAndCsr = {
  /** PKCS#8 PEM. Secret: never log it, never put it in a snapshot. */
  keyPem: string;
  csrPem: string;
};

/**
 * The CA decides the certificate's name from what the agent is authorized for; the SAN in the
 * request only documents what was asked for.
 */
export async function generateKeyAndCsr(spiffeId: string): Promise<KeyAndCsr> {
  const keys = await webcrypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPem: pem('PRIVATE KEY', pkcs8), csrPem: csr.toString('pem') };
}

function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}
