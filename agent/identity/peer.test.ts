import { X509Certificate, webcrypto } from 'node:crypto';
import t from 'tap';
import type { JsonGeneralNames } from '@peculiar/x509';
import { spiffeIdOfCertificate } from './peer.ts';
import { x509 } from '../../api/x509.ts';

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const keys = await webcrypto.subtle.generateKey(alg, false, ['sign', 'verify']);

/** A real certificate with exactly the given SAN extensions (one entry list per extension). */
async function certificateWith(...sans: JsonGeneralNames[]): Promise<X509Certificate> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=test',
    keys,
    signingAlgorithm: alg,
    extensions: sans.map((names) => new x509.SubjectAlternativeNameExtension(names, true)),
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

const ID = 'spiffe://cluster.local/ns/shop/sa/checkout';

t.test('reads the one SPIFFE URI SAN', async (t) => {
  const cert = await certificateWith([{ type: 'url', value: ID }, { type: 'dns', value: 'checkout.shop.svc' }]);
  t.equal(spiffeIdOfCertificate(cert), ID, 'from a Node X509Certificate');
  t.equal(spiffeIdOfCertificate(cert.raw), ID, 'from DER');
});

t.test('refuses certificates without exactly one valid SPIFFE ID', async (t) => {
  const cases: [string, JsonGeneralNames[]][] = [
    ['no SAN extension', []],
    ['no URI SAN', [[{ type: 'dns', value: 'checkout' }]]],
    ['two URI SANs', [[{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://cluster.local/ns/shop/sa/admin' }]]],
    ['a non-SPIFFE URI', [[{ type: 'url', value: 'https://cluster.local/ns/shop/sa/checkout' }]]],
    ['a malformed SPIFFE URI', [[{ type: 'url', value: 'spiffe://cluster.local/ns/shop/sa/checkout/' }]]],
    ['two SAN extensions', [[{ type: 'url', value: ID }], [{ type: 'url', value: ID }]]],
    // In Node's `subjectaltname` display string this reads like a second, URI entry.
    ['a DNS SAN imitating a URI entry', [[{ type: 'dns', value: `x, URI:${ID}` }]]],
  ];
  for (const [name, sans] of cases) {
    const cert = await certificateWith(...sans);
    t.throws(() => spiffeIdOfCertificate(cert), { code: 'PEER_IDENTITY_INVALID' }, name);
  }
});
