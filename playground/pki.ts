// The playground cluster's PKI: one CA, the API server's serving certificate, client certificates
// for every component (each with the user and groups Kubernetes' default RBAC expects), and the
// service-account signing key. ECDSA P-256 throughout: small, fast, and what Weft itself uses.
import { webcrypto } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { x509, type CryptoKey, type CryptoKeyPair } from '../api/x509.ts';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const YEAR_MS = 365 * 24 * 3600 * 1000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

interface Issuer {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  // Positive 16-byte serial: clear the top bit.
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] ?? 0) & 0x7f;
  return Buffer.from(b).toString('hex');
}

function escapeDn(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']));
}

async function createCA(commonName: string): Promise<Issuer> {
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${escapeDn(commonName)}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 10 * YEAR_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

interface LeafRequest {
  commonName: string;
  organizations?: string[];
  server?: { dns: string[]; ips: string[] };
  client?: boolean;
}

async function issue(ca: Issuer, req: LeafRequest): Promise<KeyPairPem> {
  const keys = await newKeys();
  const now = Date.now();
  const usages: string[] = [];
  if (req.server) usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (req.client) usages.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
  ];
  if (req.server) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        ...req.server.dns.map((value) => ({ type: 'dns' as const, value })),
        ...req.server.ips.map((value) => ({ type: 'ip' as const, value })),
      ]),
    );
  }
  const name = [`CN=${escapeDn(req.commonName)}`, ...(req.organizations ?? []).map((o) => `O=${escapeDn(o)}`)];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: name.join(', '),
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + YEAR_MS),
    signingKey: ca.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALG,
    extensions,
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

export interface ClusterPki {
  caPem: string;
  /** Private key of the cluster CA, kept so that later components (e.g. kubelet clients) can be issued. */
  caKeyPem: string;
  apiserver: KeyPairPem;
  admin: KeyPairPem;
  controllerManager: KeyPairPem;
  scheduler: KeyPairPem;
  kubeProxy: KeyPairPem;
  nodes: Record<string, KeyPairPem>;
  serviceAccountKeyPem: string;
  serviceAccountPubPem: string;
}

export interface PkiRequest {
  hostIP: string;
  apiServiceIP: string;
  nodeNames: string[];
}

export async function createClusterPki(req: PkiRequest): Promise<ClusterPki> {
  const ca = await createCA('weft-playground-ca');
  const client = (commonName: string, organizations?: string[]) =>
    issue(ca, { commonName, client: true, ...(organizations ? { organizations } : {}) });
  const nodes: Record<string, KeyPairPem> = {};
  for (const n of req.nodeNames) nodes[n] = await client(`system:node:${n}`, ['system:nodes']);
  const sa = await newKeys();
  return {
    caPem: ca.cert.toString('pem'),
    caKeyPem: await exportKeyPem(ca.keys.privateKey),
    apiserver: await issue(ca, {
      commonName: 'kube-apiserver',
      server: {
        dns: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'],
        ips: [req.hostIP, req.apiServiceIP, '127.0.0.1'],
      },
    }),
    admin: await client('weft-playground-admin', ['system:masters']),
    controllerManager: await client('system:kube-controller-manager'),
    scheduler: await client('system:kube-scheduler'),
    kubeProxy: await client('system:kube-proxy'),
    nodes,
    serviceAccountKeyPem: await exportKeyPem(sa.privateKey),
    serviceAccountPubPem: x509.PemConverter.encode(await webcrypto.subtle.exportKey('spki', sa.publicKey), 'PUBLIC KEY'),
  };
}

/** Writes a PEM file readable only by its owner (key material never goes anywhere else). */
export async function writePem(dir: string, name: string, pem: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, name);
  await writeFile(path, pem, { mode: 0o600 });
  return path;
}

/** A kubeconfig in JSON (which kubectl and every client library read as YAML). */
export function kubeconfig(server: string, caPem: string, user: string, cred: KeyPairPem): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'weft-playground', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
      users: [{ name: user, user: { 'client-certificate-data': b64(cred.certPem), 'client-key-data': b64(cred.keyPem) } }],
      contexts: [{ name: 'weft-playground', context: { cluster: 'weft-playground', user } }],
      'current-context': 'weft-playground',
    },
    null,
    2,
  );
}
