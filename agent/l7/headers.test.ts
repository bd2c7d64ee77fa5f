// Findings 2 and 3 of the hostile-input review: a header or an authority named twice must not let
// policy judge one value while the pod reads another. Real sockets, a real backend that reports
// what it received.
import t from 'tap';
import { CLIENT_START, FLAG, FRAME, frame, headerBlock, rawH2Exchange } from './h2-raw.ts';
import { connect2, rawExchange, request2, startFront, startHttp1Upstream, startHttp2Upstream } from './test-fixtures.ts';
import type { HttpRequestInfo, RequestVerdict } from './types.ts';

/** Denies a stolen token and the admin host; records what it judged. */
function judge(seen: { host: string; authorization: string | undefined; tenant: string | undefined }[]) {
  return (req: HttpRequestInfo): RequestVerdict => {
    seen.push({ host: req.host, authorization: req.header('authorization'), tenant: req.header('x-tenant') });
    if (req.header('authorization') === 'Bearer stolen') return { allow: false, reason: 'stolen token' };
    if (req.host === 'admin.example') return { allow: false, reason: 'admin host' };
    return { allow: true };
  };
}

t.test('HTTP/1.1: a repeated singleton header is refused with 400, never forwarded', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const seen: Parameters<typeof judge>[0] = [];
  const front = await startFront(t, upstream.port, { authorize: judge(seen) });
  const repeats = [
    'Authorization: Bearer stolen\r\nauthorization: Bearer fine',
    'Host: shop.example\r\nhost: admin.example',
    'User-Agent: a\r\nuser-agent: b',
    'content-type: text/plain\r\nContent-Type: application/grpc',
    'referer: /a\r\nreferer: /b',
  ];
  for (const fields of repeats) {
    const head = fields.startsWith('Host') ? fields : `host: shop.example\r\n${fields}`;
    const answer = await rawExchange(front.port, `GET /x HTTP/1.1\r\n${head}\r\nconnection: close\r\n\r\n`);
    t.match(answer, /^HTTP\/1.1 400 /, fields.split(':')[0] ?? '');
    t.match(answer, /repeated/);
  }
  t.equal(upstream.seen.length, 0, 'nothing reached the pod');
  t.equal(seen.length, 0, 'policy never judged a request it could not see as the pod would');
});

t.test('HTTP/1.1: a repeated list header reaches policy exactly as forwarded', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const seen: Parameters<typeof judge>[0] = [];
  const front = await startFront(t, upstream.port, { authorize: judge(seen) });
  const answer = await rawExchange(front.port, 'GET /x HTTP/1.1\r\nhost: shop.example\r\nx-tenant: a\r\nX-Tenant: b\r\nconnection: close\r\n\r\n');
  t.match(answer, /^HTTP\/1.1 200 /);
  t.equal(seen[0]?.tenant, 'a, b');
  t.equal(upstream.seen[0]?.headers['x-tenant'], seen[0]?.tenant, 'the pod read what policy judged');
});

t.test('HTTP/1.1 absolute-form: the target authority wins; a Host naming another origin is refused', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const seen: Parameters<typeof judge>[0] = [];
  const front = await startFront(t, upstream.port, { authorize: judge(seen) });
  const bypass = await rawExchange(front.port, 'GET http://admin.example/x HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n');
  t.match(bypass, /^HTTP\/1.1 400 /, 'target admin.example, Host shop.example');
  const spoof = await rawExchange(front.port, 'GET http://shop.example/x HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n');
  t.match(spoof, /^HTTP\/1.1 400 /, 'target shop.example, Host admin.example');
  t.equal(upstream.seen.length, 0);

  const same = await rawExchange(front.port, 'GET http://Shop.Example:80/a/../x?q HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n\r\n');
  t.match(same, /^HTTP\/1.1 200 /, 'the same origin spelt differently is fine');
  // Node answers an HTTP/1.1 request without Host with 400 itself (RFC 9112 3.2); HTTP/1.0 may omit it.
  const noHost = await rawExchange(front.port, 'GET http://shop.example:8080/y HTTP/1.0\r\n\r\n');
  t.match(noHost, /^HTTP\/1.1 200 /);
  const denied = await rawExchange(front.port, 'GET http://admin.example/y HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n');
  t.match(denied, /^HTTP\/1.1 403 /);
  t.same(
    upstream.seen.map((r) => [r.url, r.headers.host]),
    [
      ['/x?q', 'Shop.Example:80'],
      ['/y', 'shop.example:8080'],
    ],
    'forwarded in origin-form, Host = the target authority',
  );
  t.same(
    seen.map((s) => s.host),
    ['shop.example', 'shop.example', 'admin.example'],
  );
});

t.test('HTTP/2: :authority and a host naming another origin, and repeated singletons, are refused', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const seen: Parameters<typeof judge>[0] = [];
  const front = await startFront(t, upstream.port, { authorize: judge(seen) });
  const session = connect2(t, front.port);
  const mismatch = await request2(session, { ':authority': 'shop.example', host: 'admin.example', ':path': '/x' });
  t.equal(mismatch.headers[':status'], 400, ':authority shop.example, host admin.example');
  const agree = await request2(session, { ':authority': 'shop.example', host: 'SHOP.example:80', ':path': '/x' });
  t.equal(agree.headers[':status'], 200, 'the same origin spelt differently is fine');

  const request = (fields: [string, string][]): Buffer =>
    Buffer.concat([CLIENT_START, frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/x'], [':authority', 'shop.example'], ...fields]))]);
  for (const fields of [
    [
      ['authorization', 'Bearer stolen'],
      ['authorization', 'Bearer fine'],
    ],
    [
      ['user-agent', 'a'],
      ['user-agent', 'b'],
    ],
    [
      ['host', 'shop.example'],
      ['host', 'admin.example'],
    ],
  ] as [string, string][][]) {
    const answer = await rawH2Exchange(front.port, request(fields));
    // nghttp2 itself resets a stream with two host fields (PROTOCOL_ERROR); the rest get our 400.
    const reset = answer.frames.some((f) => f.type === FRAME.RST_STREAM && f.streamId === 1);
    t.ok(answer.status === 400 || (answer.status === undefined && reset), `repeated ${fields[0]?.[0]}: 400 or RST_STREAM`);
  }
  const once = await rawH2Exchange(front.port, request([['authorization', 'Bearer fine']]));
  t.equal(once.status, 200, 'the raw client itself is understood');
  t.equal(upstream.seen.length, 2, 'only the two good requests reached the pod');
  t.equal(seen.length, 2);
});
