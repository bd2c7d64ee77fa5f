// HTTP/1.1 through serveHttp() on real loopback sockets: a keep-alive client, the proxy on a TCP
// listener, a real Node HTTP/1.1 backend.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LOOPBACK, closed, denyAdmin, keepAliveAgent, rawExchange, request1, startFront, startHttp1Upstream } from './test-fixtures.ts';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

t.test('allowed and denied requests share one keep-alive connection; the backend sees what policy saw', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);

  const first = await request1(agent, front.port, { path: '/items?color=red', headers: { 'x-trace': 'abc', forwarded: 'for=203.0.113.9' } });
  t.equal(first.status, 200);
  const echoed = JSON.parse(first.body.toString()) as { url: string; headers: http.IncomingHttpHeaders };
  t.equal(echoed.url, '/items?color=red', 'path and query as sent');
  t.equal(echoed.headers.host, 'shop.example', "the client's Host, not the upstream address");
  t.equal(echoed.headers['x-trace'], 'abc');
  t.equal(echoed.headers.forwarded, 'for=203.0.113.9', 'Forwarded as the client sent it, nothing appended');
  t.notOk(echoed.headers.via, 'no Via added');

  const denied = await request1(agent, front.port, { path: '/admin/users' });
  t.equal(denied.status, 403);
  t.equal(denied.body.toString(), 'access denied: admin is off limits');
  t.match(denied.headers['content-type'], /^text\/plain/);

  const after = await request1(agent, front.port, { method: 'POST', path: '/orders', body: 'one order' });
  t.equal(after.status, 200, 'the connection still works after a denial');

  t.equal(front.sessions.length, 1, 'all three requests came over one client connection');
  t.equal(upstream.connections(), 1, 'and went upstream over one kept-alive connection');
  t.equal(upstream.seen.length, 2, 'the denied request never reached the backend');
  t.same(
    front.records.map((r) => [r.req.method, r.req.path, r.req.host, r.req.protocol, r.status, r.denied]),
    [
      ['GET', '/items', 'shop.example', 'http/1.1', 200, undefined],
      ['GET', '/admin/users', 'shop.example', 'http/1.1', 403, 'admin is off limits'],
      ['POST', '/orders', 'shop.example', 'http/1.1', 200, undefined],
    ],
  );
  t.ok(front.records.every((r) => r.durationMs >= 0));
  agent.destroy();
  t.same(await front.outcomes[0], { requests: 3, denied: 1, error: '' }, 'done once the client closed; a clean end');
});

t.test('spellings of a denied path are normalized before policy and sent upstream normalized', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);
  for (const path of ['//admin', '/./admin', '/a/../admin', '/%61dmin', '/%2e%2e/admin', '/x/..//admin/', 'http://shop.example/%61dmin']) {
    const r = await request1(agent, front.port, { path });
    t.equal(r.status, 403, `${path} is denied`);
  }
  for (const path of ['/admin%2Fsecrets', '/adm%5Cin', '/a%zz']) {
    const r = await request1(agent, front.port, { path });
    t.equal(r.status, 400, `${path} is refused`);
    t.match(r.body.toString(), /^bad request: /);
  }
  const allowed = await request1(agent, front.port, { path: '/a/./b//c/../%7Euser?q=/../admin' });
  t.equal(allowed.status, 200);
  t.equal(upstream.seen.at(-1)?.url, '/a/b/~user?q=/../admin', 'the backend got the normalized path and the query untouched');
  t.equal(upstream.seen.length, 1, 'nothing else reached the backend');
  t.equal(front.sessions.length, 1, 'refusals kept the connection open');
});

t.test('policy sees method, host, headers (repeats joined) and gRPC-ness', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const seen: { method: string; host: string; tenant: string | undefined; missing: string | undefined; grpc: boolean }[] = [];
  const front = await startFront(t, upstream.port, {
    authorize: (req) => {
      seen.push({ method: req.method, host: req.host, tenant: req.header('x-tenant'), missing: req.header('x-missing'), grpc: req.grpc });
      return { allow: true };
    },
  });
  // Raw, to send a repeated header and a mixed-case Host.
  const response = await rawExchange(
    front.port,
    'DELETE /x HTTP/1.1\r\nHost: Shop.Example.:8080\r\nX-Tenant: a\r\nX-Tenant: b\r\ncontent-type: application/grpc-web\r\nconnection: close\r\n\r\n',
  );
  t.match(response, /^HTTP\/1.1 200/);
  t.same(seen, [{ method: 'DELETE', host: 'shop.example', tenant: 'a, b', missing: undefined, grpc: true }]);
});

t.test('a denied gRPC(-web) call gets a trailers-only PERMISSION_DENIED', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);
  const r = await request1(agent, front.port, { method: 'POST', path: '/admin/Svc/Call', headers: { 'content-type': 'application/grpc-web+proto' }, body: Buffer.alloc(5) });
  t.equal(r.status, 200);
  t.equal(r.headers['grpc-status'], '7');
  t.equal(r.headers['grpc-message'], 'access denied: admin is off limits');
  t.equal(r.body.length, 0);
  t.equal(front.records[0]?.grpcStatus, 7);
});

t.test('bodies stream both ways: the response starts before the request has ended, 16 MiB each way, trailers forwarded', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);
  const payload = randomBytes(16 * 1024 * 1024);

  const req = http.request({ agent, host: LOOPBACK, port: front.port, method: 'POST', path: '/stream', headers: { host: 'shop.example' } });
  req.write(payload.subarray(0, 1024));
  // Nothing more is sent until the first echoed bytes are back: a proxy that buffered the request
  // (or the response) would deadlock here.
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  const firstEcho = new Promise<void>((resolve) => res.once('data', () => resolve()));
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  await firstEcho;
  t.pass('the first echoed bytes arrived while the request was still open');
  req.end(payload.subarray(1024));
  await once(res, 'end');
  const echoed = Buffer.concat(chunks);
  t.equal(echoed.length, payload.length);
  t.equal(sha256(echoed), sha256(payload), 'the body came back intact');
  t.equal(res.trailers['x-bytes'], String(payload.length), 'the response trailer was forwarded');

  const big = await request1(agent, front.port, { path: `/big/${16 * 1024 * 1024}` });
  t.equal(big.body.length, 16 * 1024 * 1024);
  t.equal(upstream.connections(), 1);
});

t.test('a malformed request gets 400 and its connection closes; another connection is untouched', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);
  t.equal((await request1(agent, front.port, { path: '/before' })).status, 200);

  const garbage = await rawExchange(front.port, 'GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello');
  t.match(garbage, /^HTTP\/1.1 400 Bad Request\r\n/, 'conflicting Content-Length: 400');
  t.match(garbage, /connection: close/);
  const smuggle = await rawExchange(front.port, 'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n');
  t.match(smuggle, /^HTTP\/1.1 400 /, 'Transfer-Encoding with Content-Length: 400');
  const nonsense = await rawExchange(front.port, 'HELLO THERE\r\n\r\n');
  t.match(nonsense, /^HTTP\/1.1 400 /);

  t.equal((await request1(agent, front.port, { path: '/after' })).status, 200, 'the good keep-alive connection still serves');
  const outcomes = await Promise.all(front.outcomes.slice(1));
  t.ok(outcomes.every((o) => o.error.startsWith('malformed request: HPE_')), 'each bad connection ended with a parse error');
  t.same(
    upstream.seen.map((s) => s.url),
    ['/before', '/after'],
    'nothing malformed reached the backend',
  );
});

t.test('a GET with a body is refused rather than forwarded without it', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const agent = keepAliveAgent(t);
  // Node's client frames a GET body only if told its length.
  const r = await request1(agent, front.port, { path: '/search', body: '{"q":1}', headers: { 'content-type': 'application/json', 'content-length': 7 } });
  t.equal(r.status, 400);
  t.equal((await request1(agent, front.port, { path: '/search' })).status, 200, 'the connection still works');
  t.equal(upstream.seen.length, 1);
});

t.test('upstream failures: 503 when the pod cannot be reached, 502 when it hangs up, a cut response stays cut', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const closed = net.createServer();
  const closedPort = await new Promise<number>((resolve) => closed.listen(0, LOOPBACK, () => resolve((closed.address() as net.AddressInfo).port)));
  await new Promise((resolve) => closed.close(resolve));

  const unreachable = await startFront(t, closedPort);
  const a1 = keepAliveAgent(t);
  const r503 = await request1(a1, unreachable.port, { path: '/x' });
  t.equal(r503.status, 503);
  t.equal(r503.body.toString(), 'upstream unavailable');
  t.equal(unreachable.records[0]?.status, 503);

  const front = await startFront(t, upstream.port);
  const a2 = keepAliveAgent(t);
  const r502 = await request1(a2, front.port, { path: '/hangup' });
  t.equal(r502.status, 502);
  t.equal(r502.body.toString(), 'upstream reset');
  t.equal((await request1(a2, front.port, { path: '/next' })).status, 200, 'the next request dials a new upstream connection');
  t.equal(upstream.connections(), 2);

  await t.rejects(request1(a2, front.port, { path: '/cut' }), 'a response cut mid-body reaches the client as an error, not as a short body');
  t.equal(front.records.at(-1)?.status, 502);
});

t.test('close() ends an open keep-alive session, and its upstream', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const socket = net.connect({ host: LOOPBACK, port: front.port });
  let error = '';
  socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? ''));
  socket.write('GET /one HTTP/1.1\r\nHost: shop.example\r\n\r\n');
  await once(socket, 'data');
  const closedByProxy = closed(socket);
  front.sessions[0]?.close('policy changed');
  await closedByProxy;
  t.equal(error, 'ECONNRESET', 'the client sees a reset, not a clean close it could take for the end of a keep-alive');
  t.same(await front.outcomes[0], { requests: 1, denied: 0, error: 'policy changed' });
  t.equal(upstream.connections(), 1);
});

t.test('an idle keep-alive connection is closed after idleTimeoutMs, cleanly', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { idleTimeoutMs: 200 });
  const agent = keepAliveAgent(t);
  t.equal((await request1(agent, front.port, { path: '/x' })).status, 200);
  const started = Date.now();
  t.same(await front.outcomes[0], { requests: 1, denied: 0, error: '' });
  t.ok(Date.now() - started >= 150, 'not before the timeout');
});

t.test('WebSocket upgrades are authorized, then tunnelled', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);

  const socket = net.connect({ host: LOOPBACK, port: front.port });
  t.teardown(() => socket.destroy());
  socket.write('GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  while (!received.includes('\r\n\r\n')) await once(socket, 'data');
  t.match(received, /^HTTP\/1.1 101 /);
  received = '';
  socket.write('ping over the tunnel');
  while (received.length < 'ping over the tunnel'.length) await once(socket, 'data');
  t.equal(received, 'ping over the tunnel', 'bytes echoed through the upgraded connection');
  t.equal(upstream.seen[0]?.url, '/chat');

  const denied = await rawExchange(front.port, 'GET /admin/ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  t.match(denied, /^HTTP\/1.1 403 Forbidden\r\n/);
  t.match(denied, /access denied: admin is off limits$/);
  t.equal(upstream.seen.length, 1, 'the denied upgrade never reached the backend');
});

t.test('an Upgrade other than WebSocket (h2c) is served as a plain request, hop-by-hop headers dropped', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const response = await rawExchange(
    front.port,
    'GET /plain HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nKeep-Alive: timeout=5\r\n\r\n',
  );
  t.match(response, /^HTTP\/1.1 200 OK\r\n/, 'no 101: the connection stays HTTP/1.1');
  const seen = upstream.seen[0]?.headers ?? {};
  t.notOk(seen.upgrade, 'Upgrade not forwarded');
  t.notOk(seen['http2-settings'], 'nor the headers Connection named');
  t.notOk(seen['keep-alive'], 'nor Keep-Alive');
  t.equal(seen.host, 'shop.example');
});

t.test('a client that half-closes after its request still gets the response', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port);
  const socket = net.connect({ host: LOOPBACK, port: front.port, allowHalfOpen: true });
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('end', () => socket.end());
  socket.end('GET /x HTTP/1.1\r\nHost: shop.example\r\n\r\nGET /y HTTP/1.1\r\nHost: shop.example\r\n\r\n');
  await closed(socket);
  t.same(
    [...received.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]),
    ['/x', '/y'],
    'both responses, then the proxy closed its side',
  );
  t.same(await front.outcomes[0], { requests: 2, denied: 0, error: '' });
});

t.test('a policy that throws denies', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, {
    authorize: () => {
      throw new Error('boom');
    },
  });
  const r = await request1(keepAliveAgent(t), front.port, { path: '/x' });
  t.equal(r.status, 403);
  t.equal(r.body.toString(), 'access denied: policy error');
  t.equal(upstream.seen.length, 0);
});

t.test('pipelined requests are answered in order over the single upstream connection', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { authorize: denyAdmin });
  const response = await rawExchange(
    front.port,
    'GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
  );
  const statuses = [...response.matchAll(/HTTP\/1.1 (\d{3})/g)].map((m) => m[1]);
  t.same(statuses, ['200', '403', '200']);
  t.ok(response.indexOf('"/p1"') < response.indexOf('"/p3"'));
  await sleep(10);
  t.equal(upstream.connections(), 1);
});
