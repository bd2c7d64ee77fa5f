import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { authorizeIdentity } from './authorize.ts';
import { MeshCa } from './ca.ts';
import { CaError } from './errors.ts';
import { createRoot, loadRoot, toPem } from './root.ts';
import { x509 } from '../../api/x509.ts';

const HOUR = 60 * 60 * 1000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

type KeyAlg = webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams;

/** A real PKCS#10 request, signed by its own key, asking for names the CA must ignore. */
async function makeCsr(algorithm: KeyAlg = { name: 'ECDSA', namedCurve: 'P-256' }): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const signingAlgorithm = algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : algorithm;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=admin, O=system:masters',
    keys,
    signingAlgorithm,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: 'url', value: 'spiffe://evil.example/ns/kube-system/sa/admin' },
        { type: 'dns', value: 'kubernetes.default' },
      ]),
    ],
  });
  return csr.toString('pem');
}

async function expectCaError(t: Test, promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CaError, `refused with a CaError (${String(err)})`);
  t.equal((err as CaError).code, code, `code ${code}`);
}

const { root, certificatePem: rootPem, keyPem: rootKeyPem } = await createRoot({ trustDomain: 'cluster.local' });
const ca = new MeshCa(root);

t.test('the generated root is a self-signed P-256 CA limited to signing leaves', async (t) => {
  const cert = new X509Certificate(rootPem);
  t.equal(cert.ca, true, 'CA:true');
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'P-256 key');
  t.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey), 'self-signed');
  const parsed = new x509.X509Certificate(rootPem);
  t.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.pathLength, 0, 'pathlen 0');
  const years = (cert.validToDate.getTime() - Date.now()) / (365 * 24 * HOUR);
  t.ok(years > 9.9 && years < 10.1, `about ten years (${years.toFixed(2)})`);
  // The Secret round trip: loading the PEMs gives the same root.
  const reloaded = await loadRoot({ certificatePem: rootPem, keyPem: rootKeyPem, trustDomain: 'cluster.local' });
  t.equal(reloaded.keyId, root.keyId, 'the PEMs load back as the same root');
});

t.test('signs a CSR with exactly the authorized SPIFFE ID, P-256, 24 h', async (t) => {
  const now = new Date();
  const signed = await ca.sign(await makeCsr(), { namespace: 'shop', serviceAccount: 'checkout' }, now);
  const leaf = new X509Certificate(signed.certificatePem);

  t.equal(signed.spiffeId, 'spiffe://cluster.local/ns/shop/sa/checkout', 'SPIFFE ID from the authorized identity');
  t.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/checkout', 'only the authorized URI SAN, not the CSR names');
  t.equal(leaf.subject, undefined, 'no subject taken from the CSR');
  t.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'P-256 key');
  t.equal(leaf.ca, false, 'CA:false');
  t.same([...(leaf.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort(), 'extKeyUsage serverAuth + clientAuth');
  t.ok(leaf.checkIssued(new X509Certificate(rootPem)) && leaf.verify(new X509Certificate(rootPem).publicKey), 'signed by the root');
  // X.509 times have one-second resolution.
  t.ok(Math.abs(leaf.validToDate.getTime() - now.getTime() - 24 * HOUR) < 1000, '24 h from now');
  t.ok(Math.abs(now.getTime() - leaf.validFromDate.getTime() - 5 * 60 * 1000) < 1000, 'backdated 5 min for skew');
  t.equal(signed.serialNumber.length, 32, '128-bit serial field');
  t.equal(signed.trustBundlePem, rootPem, 'trust bundle is the root');

  const parsed = new x509.X509Certificate(signed.certificatePem);
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension);
  t.equal(san?.critical, true, 'SAN critical because the subject is empty');
  t.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature, 'keyUsage digitalSignature only');

  const other = await ca.sign(await makeCsr(), { namespace: 'shop', serviceAccount: 'checkout' });
  t.not(other.serialNumber, signed.serialNumber, 'serials are random');
});

t.test('OpenSSL accepts the leaf for both TLS client and server use', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const signed = await ca.sign(await makeCsr(), { namespace: 'default', serviceAccount: 'default' });
  await writeFile(join(dir, 'root.pem'), rootPem);
  await writeFile(join(dir, 'leaf.pem'), signed.certificatePem);
  for (const purpose of ['sslclient', 'sslserver']) {
    const { stdout } = await promisify(execFile)('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), '-purpose', purpose, join(dir, 'leaf.pem')]);
    t.match(stdout, /leaf\.pem: OK/, `openssl verify -purpose ${purpose}`);
  }
});

t.test('a CSR whose signature does not verify is refused with CSR_INVALID', async (t) => {
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(await makeCsr()).rawData);
  // The signature BIT STRING is the last field: flipping a bit near the end breaks only the signature.
  der[der.length - 5] = (der[der.length - 5] as number) ^ 0x01;
  await expectCaError(t, ca.sign(toPem('CERTIFICATE REQUEST', der), { namespace: 'a', serviceAccount: 'b' }), 'CSR_INVALID');

  await expectCaError(t, ca.sign('not a csr', { namespace: 'a', serviceAccount: 'b' }), 'CSR_INVALID');
  const two = (await makeCsr()) + (await makeCsr());
  await expectCaError(t, ca.sign(two, { namespace: 'a', serviceAccount: 'b' }), 'CSR_INVALID');
});

t.test('RSA and P-384 keys are refused with KEY_UNSUPPORTED', async (t) => {
  const rsa = await makeCsr({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' });
  await expectCaError(t, ca.sign(rsa, { namespace: 'a', serviceAccount: 'b' }), 'KEY_UNSUPPORTED');
  const p384 = await makeCsr({ name: 'ECDSA', namedCurve: 'P-384' });
  await expectCaError(t, ca.sign(p384, { namespace: 'a', serviceAccount: 'b' }), 'KEY_UNSUPPORTED');
});

t.test('an identity that cannot form a SPIFFE ID is refused with IDENTITY_INVALID', async (t) => {
  const csr = await makeCsr();
  for (const identity of [
    { namespace: 'Shop', serviceAccount: 'a' },
    { namespace: 'a/b', serviceAccount: 'a' },
    { namespace: 'shop', serviceAccount: '' },
    { namespace: 'shop', serviceAccount: 'a/../../x' },
  ]) {
    await expectCaError(t, ca.sign(csr, identity), 'IDENTITY_INVALID');
  }
});

t.test('a leaf never outlives its root', async (t) => {
  const now = new Date();
  const { root: shortRoot } = await createRoot({ trustDomain: 'td', validityDays: 1, now });
  const shortCa = new MeshCa(shortRoot, { ttlMs: 7 * 24 * HOUR });
  const signed = await shortCa.sign(await makeCsr(), { namespace: 'a', serviceAccount: 'b' }, now);
  t.equal(signed.notAfter.getTime(), shortRoot.certificate.notAfter.getTime(), 'notAfter clamped to the root');
});

t.test('loadRoot refuses unusable roots with ROOT_INVALID', async (t) => {
  const other = await createRoot({ trustDomain: 'cluster.local' });
  await expectCaError(t, loadRoot({ certificatePem: rootPem, keyPem: other.keyPem, trustDomain: 'cluster.local' }), 'ROOT_INVALID');
  const leaf = await ca.sign(await makeCsr(), { namespace: 'a', serviceAccount: 'b' });
  await expectCaError(t, loadRoot({ certificatePem: leaf.certificatePem, keyPem: rootKeyPem, trustDomain: 'cluster.local' }), 'ROOT_INVALID');
  await expectCaError(t, loadRoot({ certificatePem: rootPem + rootPem, keyPem: rootKeyPem, trustDomain: 'cluster.local' }), 'ROOT_INVALID');
  const future = new Date(Date.now() + 11 * 365 * 24 * HOUR);
  await expectCaError(t, loadRoot({ certificatePem: rootPem, keyPem: rootKeyPem, trustDomain: 'cluster.local', now: future }), 'ROOT_INVALID');
  await expectCaError(t, loadRoot({ certificatePem: rootPem, keyPem: 'garbage', trustDomain: 'cluster.local' }), 'ROOT_INVALID');
  // A SEC1 "EC PRIVATE KEY" PEM, as `openssl ecparam -genkey` writes, is accepted.
  const sec1 = createPrivateKey(rootKeyPem).export({ type: 'sec1', format: 'pem' }) as string;
  t.match(sec1, /BEGIN EC PRIVATE KEY/);
  const loaded = await loadRoot({ certificatePem: rootPem, keyPem: sec1, trustDomain: 'cluster.local' });
  t.equal(loaded.keyId, root.keyId, 'SEC1 key accepted');
});

t.test('MeshCa refuses nonsensical lifetimes', async (t) => {
  t.throws(() => new MeshCa(root, { ttlMs: 0 }), { code: 'CONFIG_INVALID' });
  t.throws(() => new MeshCa(root, { ttlMs: HOUR, backdateMs: 2 * HOUR }), { code: 'CONFIG_INVALID' });
});

t.test('authorizeIdentity: only service accounts of live pods bound to the node', async (t) => {
  const pods = [
    { nodeName: 'node-a', namespace: 'shop', serviceAccountName: 'checkout', phase: 'Running' },
    { nodeName: 'node-a', namespace: 'shop', phase: 'Pending' },
    { nodeName: 'node-a', namespace: 'batch', serviceAccountName: 'job', phase: 'Succeeded' },
    { nodeName: 'node-b', namespace: 'shop', serviceAccountName: 'cart', phase: 'Running' },
    { namespace: 'shop', serviceAccountName: 'unscheduled', phase: 'Pending' },
  ];
  t.ok(authorizeIdentity({ node: 'node-a', namespace: 'shop', serviceAccount: 'checkout' }, pods), 'running pod on the node');
  t.ok(authorizeIdentity({ node: 'node-a', namespace: 'shop', serviceAccount: 'default' }, pods), 'an unnamed service account is "default"');
  t.notOk(authorizeIdentity({ node: 'node-a', namespace: 'shop', serviceAccount: 'cart' }, pods), 'pod is on another node');
  t.notOk(authorizeIdentity({ node: 'node-b', namespace: 'other', serviceAccount: 'cart' }, pods), 'same name, other namespace');
  t.notOk(authorizeIdentity({ node: 'node-a', namespace: 'batch', serviceAccount: 'job' }, pods), 'finished pod');
  t.notOk(authorizeIdentity({ node: '', namespace: 'shop', serviceAccount: 'unscheduled' }, pods), 'unscheduled pod');
});
