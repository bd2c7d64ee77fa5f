// Signs a workload certificate from a PKCS#10 request.
//
// The request only proves possession of a key: its subject and any names it asks for are ignored.
// The one URI SAN comes from the identity the caller authorized (TokenReview + pod-on-node), so a
// compromised agent cannot ask for a name it was not granted.

import { createPublicKey } from 'node:crypto';
import type { Pkcs10CertificateRequest } from '@peculiar/x509';
import { CaError } from './errors.ts';
import { ECDSA_P256, pemBlocks, randomSerialNumber, type CaRoot } from './root.ts';
import { x509 } from '../../api/x509.ts';

/** The identity a workload certificate is issued for; the trust domain is the CA's own. */
export type WorkloadIdentity = { namespace: string; serviceAccount: string };

export type SignOptions = {
  /** Certificate lifetime after notBefore's skew allowance. */
  ttlMs: number;
  /** How far notBefore is moved into the past so peers with a slightly late clock accept it. */
  backdateMs: number;
  now?: Date;
};

export type SignedCertificate = {
  spiffeId: string;
  /** Lower-case hex. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** The leaf alone. */
  certificatePem: string;
  /** What a TLS endpoint presents: the leaf followed by any intermediates (none with a root CA). */
  chainPem: string;
  /** The certificates a peer must trust to verify the chain. */
  trustBundlePem: string;
};

/** Requests larger than this are refused before parsing; a P-256 CSR is well under 1 KiB. */
const MAX_CSR_PEM_BYTES = 8 * 1024;

// Kubernetes' own rules: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain.
const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

export function spiffeIdFor(trustDomain: string, identity: WorkloadIdentity): string {
  const { namespace, serviceAccount } = identity;
  if (!DNS1123_LABEL.test(namespace)) {
    throw new CaError('IDENTITY_INVALID', `namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
  }
  if (serviceAccount.length > 253 || !DNS1123_SUBDOMAIN.test(serviceAccount)) {
    throw new CaError('IDENTITY_INVALID', `service account ${JSON.stringify(serviceAccount)} is not a DNS-1123 subdomain`);
  }
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export async function signWorkloadCsr(
  root: CaRoot,
  csrPem: string,
  identity: WorkloadIdentity,
  options: SignOptions,
): Promise<SignedCertificate> {
  const spiffeId = spiffeIdFor(root.trustDomain, identity);
  const csr = parseCsr(csrPem);
  requireP256(csr);
  let signatureValid: boolean;
  try {
    signatureValid = await csr.verify();
  } catch (err) {
    throw new CaError('CSR_INVALID', 'CSR signature algorithm is not supported', { cause: err });
  }
  if (!signatureValid) throw new CaError('CSR_INVALID', 'CSR signature does not verify with its public key');

  const now = (options.now ?? new Date()).getTime();
  const notBefore = new Date(now - options.backdateMs);
  // Never outlive the root: a leaf past its issuer's expiry would fail verification anyway, and
  // the shorter lifetime makes the agent renew in time.
  const notAfter = new Date(Math.min(now + options.ttlMs, root.certificate.notAfter.getTime()));

  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber(),
    issuer: root.certificate.subjectName,
    // Empty subject: the SPIFFE ID is the name, so the SAN below is marked critical (RFC 5280 4.2.1.6).
    subject: '',
    notBefore,
    notAfter,
    publicKey: csr.publicKey,
    signingKey: root.signingKey,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
      new x509.AuthorityKeyIdentifierExtension(root.keyId),
    ],
  });

  const certificatePem = certificate.toString('pem');
  return {
    spiffeId,
    serialNumber: certificate.serialNumber.toLowerCase(),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    certificatePem,
    chainPem: certificatePem,
    trustBundlePem: root.certificatePem,
  };
}

function parseCsr(csrPem: string): Pkcs10CertificateRequest {
  if (csrPem.length > MAX_CSR_PEM_BYTES) {
    throw new CaError('CSR_INVALID', `CSR is larger than ${MAX_CSR_PEM_BYTES} bytes`);
  }
  const blocks = pemBlocks(csrPem, 'CERTIFICATE REQUEST');
  if (blocks.length !== 1) {
    throw new CaError('CSR_INVALID', `expected exactly one PEM CERTIFICATE REQUEST block, found ${blocks.length}`);
  }
  try {
    return new x509.Pkcs10CertificateRequest(blocks[0]);
  } catch (err) {
    throw new CaError('CSR_INVALID', 'CSR is not a valid PKCS#10 structure', { cause: err });
  }
}

function requireP256(csr: Pkcs10CertificateRequest): void {
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CaError('KEY_UNSUPPORTED', 'CSR public key is not a key this CA can read', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const detail = key.asymmetricKeyDetails?.namedCurve ?? key.asymmetricKeyType ?? 'unknown';
    throw new CaError('KEY_UNSUPPORTED', `CSR key must be EC P-256, got ${detail}`);
  }
}
