// Property tests of what policy sees, through tests/helpers/fuzz.ts (WEFT_FUZZ_SECONDS; corpus in
// testdata/corpus/path/): path normalization under every option, and the header rules.
//
// Per input (a path built from the segments that matter, and a set of PathOptions):
//   - normalizing is idempotent: the normalized path normalizes to itself;
//   - a backend that reads paths the way normalization models it (Tomcat: `;` parameters cut per
//     segment before dot segments; case folded if configured) reads the forwarded path as exactly
//     the path policy evaluated, unless parameters are kept (documented: then they differ);
//   - end to end through a real serveHttp(): what reaches the pod is the evaluated path.
// And for random header lists: a repeated singleton is found whatever its case, and only then.
import fc from 'fast-check';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { jsonCorpus, runFuzz } from '../../tests/helpers/fuzz.ts';
import { SINGLETON_HEADERS, repeatedSingleton, sameAuthority } from './headers.ts';
import { type PathOptions, normalizePath } from './path.ts';
import { type Front, type Http1Upstream, rawExchange, startFront, startHttp1Upstream } from './test-fixtures.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'path');

export type PathInput = { path: string; options: PathOptions };

const segment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('admin', 'ADMIN', 'Admin', 'a', 'public', '.', '..', '', 'x.y') },
  fc.constantFrom('%2e', '%2E%2e', '%61dmin', '%41DMIN', ';x', '..;', 'admin;jsessionid=1', '.;a', '%2F', '%5C', '\\', '%25', '%3B', '%zz', '%', 'caf%c3%a9', '~', '%7E'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 6 }),
);
const arbitrary: fc.Arbitrary<PathInput> = fc.record({
  path: fc.tuple(fc.array(segment, { maxLength: 6 }), fc.constantFrom('', '?q=/../admin', '?', '#f')).map(([s, tail]) => `/${s.join('/')}${tail}`),
  options: fc.record({
    escapedSlashes: fc.constantFrom<PathOptions['escapedSlashes']>('reject', 'decode'),
    pathParameters: fc.constantFrom<PathOptions['pathParameters']>('reject', 'strip', 'keep'),
    mergeSlashes: fc.boolean(),
    caseInsensitive: fc.boolean(),
  }),
});
const { encode, decode } = jsonCorpus<PathInput>();

/** How a Tomcat-like backend reads a forwarded (already normalized) path. */
function backendReads(path: string, o: PathOptions): string {
  let p = o.pathParameters === 'strip' ? path.split('/').map((s) => s.split(';')[0]).join('/') : path;
  if (o.caseInsensitive) p = p.toLowerCase().replace(/%[0-9a-f]{2}/g, (e) => e.toUpperCase());
  return p;
}

const upstream: Http1Upstream = await startHttp1Upstream(t);
const fronts = new Map<string, Front>();
async function frontFor(o: PathOptions): Promise<Front> {
  const key = JSON.stringify(o);
  let front = fronts.get(key);
  if (!front) fronts.set(key, (front = await startFront(t, upstream.port, { path: o, authorize: () => ({ allow: true }) })));
  return front;
}

async function check({ path, options }: PathInput): Promise<void> {
  const n = normalizePath(path, options);
  if (!n.ok) return;
  const again = normalizePath(n.path, options);
  if (!again.ok || again.path !== n.path) throw new Error(`not idempotent: ${path} -> ${n.path} -> ${again.ok ? again.path : again.reason}`);
  if (options.pathParameters !== 'keep' && backendReads(n.path, options) !== n.path) throw new Error(`the backend would read ${n.path} as ${backendReads(n.path, options)}`);
  // End to end: the request line carries the path as generated (bytes a client could send).
  if ([...path].some((c) => c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) >= 0x7f)) return;
  const front = await frontFor(options);
  const before = upstream.seen.length;
  const answer = await rawExchange(front.port, `GET ${path} HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n`);
  if (!answer.startsWith('HTTP/1.1 200 ')) return; // refused (400) before policy or the pod saw it
  const record = front.records.at(-1);
  const forwarded = upstream.seen[before]?.url;
  if (record?.req.path !== n.path) throw new Error(`policy evaluated ${record?.req.path}, normalization says ${n.path}`);
  if (forwarded !== n.path + n.query) throw new Error(`the pod got ${forwarded}, policy evaluated ${n.path}${n.query}`);
}

t.test('path normalization: idempotent, read by the backend as evaluated, forwarded as evaluated', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode, encode, check });
  t.comment(`path: ${JSON.stringify(report)}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
});

t.test('headers: a repeated singleton is found in any case, and only a repeated singleton', async (t) => {
  const name = fc.oneof(fc.constantFrom(...SINGLETON_HEADERS, 'x-tenant', 'cookie', 'accept'), fc.stringMatching(/^[a-z-]{1,8}$/));
  const cased = name.chain((n) => fc.constantFrom(n, n.toUpperCase(), n.charAt(0).toUpperCase() + n.slice(1)));
  fc.assert(
    fc.property(fc.array(fc.tuple(cased, fc.string({ maxLength: 5 })), { maxLength: 8 }), (fields) => {
      const raw = fields.flat();
      const counts = new Map<string, number>();
      for (const [n] of fields) counts.set(n.toLowerCase(), (counts.get(n.toLowerCase()) ?? 0) + 1);
      const expected = [...counts].some(([n, c]) => c > 1 && SINGLETON_HEADERS.has(n));
      return (repeatedSingleton(raw) !== undefined) === expected;
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.constantFrom('shop.example', 'Shop.Example.', 'shop.example:80', 'shop.example:8080', '[::1]:80', '[::1]'), fc.constantFrom('http', 'https'), (a, scheme) => sameAuthority(a, a, scheme) && sameAuthority(a, a.toUpperCase(), scheme)),
  );
  t.pass('properties hold');
});
