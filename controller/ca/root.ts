// The mesh root: the self-signed CA certificate and key that sign every workload certificate.
// It comes from a Secret (the chart creates one, or the user brings their own); createRoot makes
// a fresh one for the chart and for tests.

import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import type { X509Certificate } from '@peculiar/x509';
import { CaError } from './errors.ts';
import { x509 } from '../../api/x509.ts';

/** ECDSA P-256 with SHA-256: the only key and signature type Weft issues. */
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

const DAY_MS = 24 * 60 * 60 * 1000;

export type CaRoot = {
  readonly certificate: X509Certificate;
  readonly certificatePem: string;
  /** Non-extractable WebCrypto signing key; the PEM is not kept in memory after loading. */
  readonly signingKey: webcrypto.CryptoKey;
  /** The root's key identifier, copied into each leaf's AuthorityKeyIdentifier. */
  readonly keyId: string;
  readonly trustDomain: string;
};

export type CreateRootOptions = {
  trustDomain: string;
  /** Lifetime of the root; about ten years unless told otherwise. */
  validityDays?: number;
  now?: Date;
};

/** A generated root, with its key as PKCS#8 PEM for the chart's Secret. */
export type GeneratedRoot = { root: CaRoot; certificatePem: string; keyPem: string };

export async function createRoot(options: CreateRootOptions): Promise<GeneratedRoot> {
  const { trustDomain } = options;
  const validityDays = options.validityDays ?? 3650;
  if (!Number.isFinite(validityDays) || validityDays < 1) {
    throw new CaError('CONFIG_INVALID', `root validity must be at least one day, got ${validityDays}`);
  }
  const now = options.now ?? new Date();
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ O: ['Weft'] }, { CN: [`Weft mesh root CA (${trustDomain})`] }],
    keys,
    signingAlgorithm: ECDSA_P256,
    // Backdated an hour so that nodes with a slow clock accept it right away.
    notBefore: new Date(now.getTime() - 60 * 60 * 1000),
    notAfter: new Date(now.getTime() + validityDays * DAY_MS),
    extensions: [
      // pathlen 0: this root signs workload certificates directly, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ski,
      // SPIFFE recommends that a CA certificate name its trust domain.
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = toPem('PRIVATE KEY', pkcs8);
  const certificatePem = certificate.toString('pem');
  const root = await loadRoot({ certificatePem, keyPem, trustDomain, now });
  return { root, certificatePem, keyPem };
}

export type LoadRootOptions = {
  certificatePem: string;
  /** PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM. */
  keyPem: string;
  trustDomain: string;
  now?: Date;
};

/**
 * Loads and checks a root: exactly one self-signed CA certificate that may sign certificates,
 * currently valid, with an EC P-256 key matching the given private key.
 */
export async function loadRoot(options: LoadRootOptions): Promise<CaRoot> {
  const now = options.now ?? new Date();
  const blocks = pemBlocks(options.certificatePem, 'CERTIFICATE');
  if (blocks.length !== 1) {
    throw new CaError('ROOT_INVALID', `expected exactly one root certificate, found ${blocks.length}`);
  }
  let certificate: X509Certificate;
  try {
    certificate = new x509.X509Certificate(blocks[0]);
  } catch (err) {
    throw new CaError('ROOT_INVALID', 'root certificate is not valid X.509', { cause: err });
  }

  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  if (!constraints?.ca) throw new CaError('ROOT_INVALID', 'root certificate is not a CA (basicConstraints CA:false or missing)');
  const usage = certificate.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CaError('ROOT_INVALID', 'root certificate key usage does not allow keyCertSign');
  }
  if (now < certificate.notBefore || now >= certificate.notAfter) {
    throw new CaError(
      'ROOT_INVALID',
      `root certificate is not valid now (valid ${certificate.notBefore.toISOString()} to ${certificate.notAfter.toISOString()})`,
    );
  }
  if (!(await certificate.isSelfSigned())) throw new CaError('ROOT_INVALID', 'root certificate is not self-signed');

  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(options.keyPem);
  } catch (err) {
    // The parser's message never contains key bytes, but the PEM itself must never reach a log.
    throw new CaError('ROOT_INVALID', 'root key is not a readable PEM private key', { cause: err });
  }
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CaError('ROOT_INVALID', 'root key must be an EC P-256 key');
  }
  const derivedSpki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  if (!derivedSpki.equals(Buffer.from(certificate.publicKey.rawData))) {
    throw new CaError('ROOT_INVALID', 'root key does not match the root certificate');
  }

  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski?.keyId ?? Buffer.from(await certificate.publicKey.getKeyIdentifier()).toString('hex');
  const signingKey = privateKey.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  return {
    certificate,
    certificatePem: certificate.toString('pem'),
    signingKey,
    keyId,
    trustDomain: options.trustDomain,
  };
}

/**
 * A positive 126-bit serial from the CSPRNG. The first byte is forced into 0x40..0x7f so the DER
 * INTEGER is positive and minimally encoded at a fixed 16 bytes.
 */
export function randomSerialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] as number) & 0x3f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}

export function toPem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${base64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

/** The PEM blocks with the given label, each as a complete PEM string. */
export function pemBlocks(text: string, label: string): string[] {
  const pattern = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return text.match(pattern) ?? [];
}
