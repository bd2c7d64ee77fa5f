// Finding 6 of the hostile-input review: spellings of a denied path that a backend serves as that
// path. Real sockets, a DENY-only rule on /admin, and a backend that reports the path it got: for
// each normalization option, what policy judged is what the pod received.
import t, { type Test } from 'tap';
import { type Http1Upstream, connect2, rawExchange, request2, startFront, startHttp1Upstream, startHttp2Upstream } from './test-fixtures.ts';
import type { PathOptions } from './path.ts';

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n`;
const statusOf = (answer: string): number => Number(/^HTTP\/1.1 (\d{3})/.exec(answer)?.[1] ?? 0);

async function statuses(t: Test, path: Partial<PathOptions> | undefined, cases: Record<string, number>): Promise<Http1Upstream> {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, path ? { path } : {});
  for (const [target, want] of Object.entries(cases)) t.equal(statusOf(await rawExchange(front.port, get(target))), want, target);
  // Whatever reached the pod is exactly what policy judged (the access records hold what it judged).
  const judged = front.records.filter((r) => r.status === 200).map((r) => r.req.path);
  t.same(
    upstream.seen.map((s) => s.url.split('?')[0]),
    judged,
    'the pod received the paths policy judged',
  );
  return upstream;
}

t.test('default: path parameters refused, so ;-tricks cannot reach /admin; case is significant', async (t) => {
  await statuses(t, undefined, { '/admin;x': 400, '/public/..;/admin': 400, '/admin/;/x': 400, '/items;jsessionid=1': 400, '/admin': 403, '/%61dmin': 403, '/ADMIN': 200, '/items': 200 });
});

t.test('pathParameters strip: parameters cut before dot segments, as Tomcat does; the pod gets the cut path', async (t) => {
  const upstream = await statuses(t, { pathParameters: 'strip' }, { '/admin;x': 403, '/public/..;/admin': 403, '/admin;a=b/x': 403, '/items;jsessionid=1': 200 });
  t.equal(upstream.seen[0]?.url, '/items');
});

t.test('pathParameters keep: `;` is an ordinary character, forwarded as judged', async (t) => {
  const upstream = await statuses(t, { pathParameters: 'keep' }, { '/admin;x': 200, '/public/..;/admin': 200 });
  t.same(
    upstream.seen.map((s) => s.url),
    ['/admin;x', '/public/..;/admin'],
  );
});

t.test('caseInsensitive: /ADMIN is /admin to policy and to the pod', async (t) => {
  const upstream = await statuses(t, { caseInsensitive: true }, { '/ADMIN': 403, '/Admin/x': 403, '/%41dmin': 403, '/Items/ID%C3%A9': 200 });
  t.equal(upstream.seen[0]?.url, '/items/id%C3%A9');
});

t.test('escapedSlashes decode and mergeSlashes off', async (t) => {
  const decoded = await statuses(t, { escapedSlashes: 'decode' }, { '/admin%2Fx': 403, '/a%2Fb': 200, '/a%5Cb': 200, '/a\\c': 200 });
  t.same(
    decoded.seen.map((s) => s.url),
    ['/a/b', '/a/b', '/a/c'],
  );
  const unmerged = await statuses(t, { mergeSlashes: false }, { '//admin': 200, '/a//b/../c': 200, '/admin': 403 });
  t.same(
    unmerged.seen.map((s) => s.url),
    ['//admin', '/a//c'],
  );
});

t.test('HTTP/2 normalizes the same way', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const session = connect2(t, front.port);
  t.equal((await request2(session, { ':path': '/admin;x' })).headers[':status'], 400);
  t.equal((await request2(session, { ':path': '/a/..;/admin' })).headers[':status'], 400);
  t.equal((await request2(session, { ':path': '/%61dmin' })).headers[':status'], 403);
  t.equal(upstream.seen.length, 0);
});
