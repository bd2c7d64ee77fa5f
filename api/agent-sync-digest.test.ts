// The digest is a contract between agents and controllers of different versions: the same content
// must give the same bytes on both sides whatever order its fields were built in, and the
// functions must not drift (pinned values), or every resume after an upgrade becomes a resend.
import t from 'tap';
import { bucketOf, bucketsFor, canonicalJson, contentHash, decodeSums, digestOf, MAX_DIGEST_BUCKETS } from './agent-sync-digest.ts';

t.test('canonical JSON sorts keys at every level and drops undefined like JSON.stringify', async (t) => {
  const a = { b: 1, a: { d: [1, { z: 'x', y: null }], c: 'é"\n' }, u: undefined };
  const b = { a: { c: 'é"\n', d: [1, { y: null, z: 'x' }] }, b: 1 };
  t.equal(canonicalJson(a), canonicalJson(b), 'field order does not matter');
  t.equal(canonicalJson(a), '{"a":{"c":"é\\"\\n","d":[1,{"y":null,"z":"x"}]},"b":1}');
  t.same(JSON.parse(canonicalJson(a)), JSON.parse(JSON.stringify(a)), 'and it is the same JSON');
  t.equal(canonicalJson([undefined, 'x']), JSON.stringify([undefined, 'x']), 'undefined in a list is null, as in JSON');
  t.not(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }), 'list order does matter');
});

t.test('pinned: bucket and hash functions do not change between versions', async (t) => {
  t.equal(bucketOf('shop/p-7', 1024), bucketOf('shop/p-7', 1024));
  t.equal(bucketOf('shop/p-7', 1), 0);
  t.same(
    ['a', 'shop/p-7', 'bench/p-9999'].map((k) => bucketOf(k, 1024)),
    [300, 530, 117],
  );
  // Checked outside Node: FNV-1a in Python, SHA-256 of the sorted JSON with openssl.
  t.equal(contentHash({ key: 'ns/x', namespace: 'ns', name: 'x', clusterIPs: [], ports: [], endpoints: [] }), 'OK2vhG2JRHU83EeGWBk2rFRFbybU2Ej/MUzh9M+0YDY=');
});

t.test('bucket counts and digests', async (t) => {
  t.same([0, 1, 2, 3, 300, 5000].map(bucketsFor), [1, 1, 2, 4, 512, MAX_DIGEST_BUCKETS]);
  const entries: [string, string][] = [
    ['a', 'h1'],
    ['b', 'h2'],
  ];
  const d = digestOf(entries, 4);
  t.equal(d.length, 32, '8 bytes a bucket');
  t.same(digestOf([...entries].reverse(), 4), d, 'entry order does not matter');
  t.not(digestOf([['a', 'h1'], ['b', 'h3']], 4).toString('hex'), d.toString('hex'), 'a changed hash changes it');
  t.equal(digestOf([], 4).toString('hex'), '0'.repeat(64), 'empty buckets are zero');
  t.notOk(decodeSums({ buckets: 4, sums: Buffer.alloc(8).toString('base64') }), 'sums of the wrong length are not trusted');
});
