// One issued workload certificate with its key, checked on arrival and ready for TLS.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import tls from 'node:tls';
import { IdentityError } from './errors.ts';
import { spiffeIdOfCertificate } from './peer.ts';

/** HBONE: TLS 1.3 only, AES-GCM suites only (DESIGN.md "HBONE tunnels"). */
export const HBONE_TLS_MIN_VERSION = 'TLSv1.3';
export const HBONE_TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';

/** The options a TLS endpoint needs to present this certificate and verify peers against the bundle. */
export type TlsCredentials = {
  key: string;
  cert: string;
  ca: string;
  minVersion: tls.SecureVersion;
  ciphers: string;
};

export type IssuedCertificate = {
  identity: string;
  /** PKCS#8 PEM of the key the CSR was made from. */
  keyPem: string;
  /** Leaf first, then intermediates. */
  chainPem: string;
  trustBundlePem: string;
};

/**
 * The key lives in a private field: it is handed out only as TLS options, and it does not appear
 * when the object is logged, inspected or serialized.
 */
export class WorkloadCertificate {
  readonly identity: string;
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly chainPem: string;
  readonly trustBundlePem: string;
  /** Presents this certificate and trusts the bundle; TLS 1.3 with AES-GCM only. */
  readonly secureContext: tls.SecureContext;
  readonly #keyPem: string;

  private constructor(issued: IssuedCertificate, leaf: X509Certificate) {
    this.identity = issued.identity;
    this.serialNumber = leaf.serialNumber.toLowerCase();
    this.notBefore = leaf.validFromDate;
    this.notAfter = leaf.validToDate;
    this.chainPem = issued.chainPem;
    this.trustBundlePem = issued.trustBundlePem;
    this.#keyPem = issued.keyPem;
    this.secureContext = tls.createSecureContext(this.tlsCredentials());
  }

  /**
   * Checks what the CA sent before anything uses it: the leaf matches our key, names exactly the
   * identity we asked for, is within its validity period and chains to the trust bundle.
   * Throws IdentityError CERTIFICATE_INVALID otherwise.
   */
  static fromIssued(issued: IssuedCertificate, now: Date = new Date()): WorkloadCertificate {
    const chain = parseCertificates(issued.chainPem, 'chain');
    const bundle = parseCertificates(issued.trustBundlePem, 'trust bundle');
    const leaf = chain[0] as X509Certificate;
    const invalid = (why: string, cause?: unknown): IdentityError =>
      new IdentityError('CERTIFICATE_INVALID', `certificate for ${issued.identity}: ${why}`, { cause });

    let keyMatches: boolean;
    try {
      keyMatches = leaf.checkPrivateKey(createPrivateKey(issued.keyPem));
    } catch (err) {
      throw invalid('private key is unreadable', err);
    }
    if (!keyMatches) throw invalid('leaf does not match the private key');
    const named = spiffeIdOfCertificate(leaf);
    if (named !== issued.identity) throw invalid(`leaf names ${named}`);
    if (now < leaf.validFromDate || now >= leaf.validToDate) {
      throw invalid(`leaf is not valid now (${leaf.validFrom} to ${leaf.validTo})`);
    }
    if (!chainsTo(chain, bundle)) throw invalid('leaf does not chain to the trust bundle');

    try {
      return new WorkloadCertificate(issued, leaf);
    } catch (err) {
      if (err instanceof IdentityError) throw err;
      throw invalid('TLS rejected the key or chain', err);
    }
  }

  tlsCredentials(): TlsCredentials {
    return { key: this.#keyPem, cert: this.chainPem, ca: this.trustBundlePem, minVersion: HBONE_TLS_MIN_VERSION, ciphers: HBONE_TLS_CIPHERS };
  }

  toJSON(): Record<string, string> {
    return {
      identity: this.identity,
      serialNumber: this.serialNumber,
      notBefore: this.notBefore.toISOString(),
      notAfter: this.notAfter.toISOString(),
    };
  }
}

function parseCertificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new IdentityError('CERTIFICATE_INVALID', `${what} contains no certificate`);
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch (err) {
    throw new IdentityError('CERTIFICATE_INVALID', `${what} contains an unreadable certificate`, { cause: err });
  }
}

/** Walks leaf → intermediates until a certificate is signed by one in the bundle. */
function chainsTo(chain: X509Certificate[], bundle: X509Certificate[]): boolean {
  let current = chain[0] as X509Certificate;
  const intermediates = chain.slice(1);
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (bundle.some((anchor) => current.checkIssued(anchor) && current.verify(anchor.publicKey))) return true;
    const next = intermediates.find((candidate) => current.checkIssued(candidate) && current.verify(candidate.publicKey));
    if (!next) return false;
    current = next;
  }
  return false;
}
