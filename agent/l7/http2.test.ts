// h2c and gRPC through serveHttp() on real loopback sockets: Node's HTTP/2 client, the proxy on a
// TCP listener, a real h2c backend speaking hand-framed gRPC on some paths.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LOOPBACK, closed, connect2, grpcFrame, parseGrpcFrames, request2, startFront, startHttp2Upstream } from './test-fixtures.ts';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const grpcHeaders = (path: string): http2.OutgoingHttpHeaders => ({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });

t.test('allowed and denied streams multiplexed on one connection; one upstream session', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);

  const [ok, denied, ok2] = await Promise.all([
    request2(client, { ':path': '/items?x=1', 'x-trace': 'abc' }),
    request2(client, { ':path': '/admin/users' }),
    request2(client, { ':method': 'POST', ':path': '/orders' }, 'one order'),
  ]);
  t.equal(ok.headers[':status'], 200);
  const echoed = JSON.parse(ok.body.toString()) as http2.IncomingHttpHeaders;
  t.equal(echoed[':path'], '/items?x=1');
  t.equal(echoed[':authority'], 'shop.example', "the client's :authority");
  t.equal(echoed['x-trace'], 'abc');
  t.notOk(echoed.forwarded ?? echoed.via, 'nothing added');
  t.equal(denied.headers[':status'], 403);
  t.equal(denied.body.toString(), 'access denied: admin is off limits');
  t.equal(ok2.headers[':status'], 200);

  // And after the denial, on the same connection:
  t.equal((await request2(client, { ':path': '/later' })).headers[':status'], 200);
  t.equal(front.sessions.length, 1);
  t.equal(upstream.sessions(), 1, 'one upstream session carried every allowed stream');
  t.equal(upstream.seen.length, 3, 'the denied stream never reached the backend');
  t.same(
    front.records.map((r) => [r.req.protocol, r.req.method, r.req.path, r.req.host, r.status, r.denied]).sort((a, b) => String(a[2]).localeCompare(String(b[2]))),
    [
      ['h2', 'GET', '/admin/users', 'shop.example', 403, 'admin is off limits'],
      ['h2', 'GET', '/items', 'shop.example', 200, undefined],
      ['h2', 'GET', '/later', 'shop.example', 200, undefined],
      ['h2', 'POST', '/orders', 'shop.example', 200, undefined],
    ],
  );
  client.close();
  t.same(await front.outcomes[0], { requests: 4, denied: 1, error: '' });
});

t.test('gRPC: allowed call with its trailers, denied call as trailers-only PERMISSION_DENIED, same connection', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);

  const call = await request2(client, grpcHeaders('/pkg.Echo/Say'), Buffer.concat([grpcFrame(Buffer.from('hi')), grpcFrame(Buffer.from('there'))]));
  t.equal(call.headers[':status'], 200);
  t.same(
    parseGrpcFrames(call.body).map((m) => m.toString()),
    ['echo:hi', 'echo:there'],
  );
  t.equal(call.trailers?.['grpc-status'], '0', 'grpc-status came through as a trailer');
  t.equal(call.trailers?.['grpc-message'], 'OK');

  const denied = await request2(client, grpcHeaders('/admin/pkg.Echo/Say'), grpcFrame(Buffer.from('x')));
  t.equal(denied.headers[':status'], 200, 'gRPC denials are HTTP 200');
  t.equal(denied.headers['grpc-status'], '7', 'PERMISSION_DENIED, in the headers: trailers-only');
  t.equal(denied.headers['grpc-message'], 'access denied: admin is off limits');
  t.equal(denied.trailers, undefined);
  t.equal(denied.body.length, 0);

  const fail = await request2(client, grpcHeaders('/pkg.Echo/Fail'), grpcFrame(Buffer.from('x')));
  t.equal(fail.headers['grpc-status'], '5', "the backend's own trailers-only answer passes as it is");

  const again = await request2(client, grpcHeaders('/pkg.Echo/Say'), grpcFrame(Buffer.from('again')));
  t.equal(again.trailers?.['grpc-status'], '0', 'the connection serves after the denial');

  const records = front.records.map((r) => [r.req.path, r.req.grpc, r.status, r.grpcStatus]);
  t.same(records, [
    ['/pkg.Echo/Say', true, 200, 0],
    ['/admin/pkg.Echo/Say', true, 200, 7],
    ['/pkg.Echo/Fail', true, 200, 5],
    ['/pkg.Echo/Say', true, 200, 0],
  ]);
  t.equal(upstream.sessions(), 1);
});

t.test('bodies stream both ways, 16 MiB, request and response trailers forwarded', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);
  const payload = randomBytes(16 * 1024 * 1024);

  const stream = client.request({ ':method': 'POST', ':path': '/stream', ':authority': 'shop.example' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc123' }));
  const chunks: Buffer[] = [];
  let trailers: http2.IncomingHttpHeaders | undefined;
  stream.on('trailers', (h: http2.IncomingHttpHeaders) => (trailers = h));
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.write(payload.subarray(0, 1024));
  // The echo of the first KiB arrives while the request is still open: nothing buffers a whole body.
  await once(stream, 'data');
  t.pass('echo arrived before the request ended');
  stream.end(payload.subarray(1024));
  await once(stream, 'end');
  const echoed = Buffer.concat(chunks);
  t.equal(echoed.length, payload.length);
  t.equal(sha256(echoed), sha256(payload));
  t.equal(trailers?.['x-bytes'], String(payload.length), 'response trailer');
  t.equal(trailers?.['x-request-trailer'], 'abc123', 'the request trailer reached the backend');
});

t.test('normalization bypasses over :path are denied, and the backend gets the normalized path', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);
  for (const path of ['//admin', '/./admin', '/a/../admin', '/%61dmin', '/%2E%2E/admin/x']) {
    t.equal((await request2(client, { ':path': path })).headers[':status'], 403, path);
  }
  for (const path of ['/admin%2f', '/x%5cadmin']) {
    const r = await request2(client, { ':path': path });
    t.equal(r.headers[':status'], 400, path);
  }
  t.equal((await request2(client, { ':path': '/a/../b/%7e?q=/../admin' })).headers[':status'], 200);
  t.same(
    upstream.seen.map((h) => h[':path']),
    ['/b/~?q=/../admin'],
  );
});

t.test('a client reset reaches the backend as a reset', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);
  const stream = client.request({ ':method': 'POST', ':path': '/hold', ':authority': 'shop.example' });
  stream.on('error', () => {});
  stream.write('some of the body');
  await once(stream, 'response');
  stream.close(NGHTTP2_CANCEL);
  while (upstream.closedStreams.length === 0) await sleep(5);
  t.same(upstream.closedStreams[0], { path: '/hold', rstCode: NGHTTP2_CANCEL }, 'the backend stream was cancelled');
});

t.test('backend failures: reset mid-response stays a reset, reset before answering is 502, refused is 503', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);

  const cut = client.request({ ':path': '/cut', ':authority': 'shop.example' });
  const cutBody: Buffer[] = [];
  cut.on('data', (chunk: Buffer) => cutBody.push(chunk));
  let ended = false;
  cut.on('end', () => (ended = true));
  cut.on('error', () => {});
  await closed(cut);
  t.equal(cut.rstCode, NGHTTP2_INTERNAL_ERROR, "the backend's reset code reached the client");
  t.equal(Buffer.concat(cutBody).toString(), 'partial');
  t.notOk(ended, 'the truncated body did not end cleanly');

  const refused = await request2(client, { ':path': '/refuse' });
  t.equal(refused.headers[':status'], 503);
  t.equal(upstream.seen.filter((h) => h[':path'] === '/refuse').length, 2, 'a refused bodyless request is tried once more (the pod did not process it)');
  const refusedPost = await request2(client, { ':method': 'POST', ':path': '/refuse' }, 'a body');
  t.equal(refusedPost.headers[':status'], 503);
  t.equal(upstream.seen.filter((h) => h[':path'] === '/refuse').length, 3, 'a request with a body is not replayed');

  t.equal((await request2(client, { ':path': '/fine' })).headers[':status'], 200, 'the connection still serves');
  t.same(
    front.records.map((r) => [r.req.path, r.status]),
    [
      ['/cut', 502],
      ['/refuse', 503],
      ['/refuse', 503],
      ['/fine', 200],
    ],
  );
});

t.test('the upstream cannot be dialled: 503; the pod closing the session: the next stream dials again', async (t) => {
  const closed = net.createServer();
  const closedPort = await new Promise<number>((resolve) => closed.listen(0, LOOPBACK, () => resolve((closed.address() as net.AddressInfo).port)));
  await new Promise((resolve) => closed.close(resolve));
  const unreachable = await startFront(t, closedPort);
  const c1 = connect2(t, unreachable.port);
  const r = await request2(c1, { ':path': '/x' });
  t.equal(r.headers[':status'], 503);
  t.equal(r.body.toString(), 'upstream unavailable');

  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const c2 = connect2(t, front.port);
  t.equal((await request2(c2, { ':path': '/one' })).headers[':status'], 200);
  t.equal(front.dials(), 1);
  upstream.goAway();
  while (upstream.sessions() === 1 && front.dials() === 1) {
    const r2 = await request2(c2, { ':path': '/two' });
    t.equal(r2.headers[':status'], 200, 'streams keep working while the pod goes away');
    if (front.dials() === 2) break;
    await sleep(5);
  }
  t.equal(front.dials(), 2, 'a new upstream session was dialled after GOAWAY');
  t.equal(front.sessions.length, 1, 'on the same client connection');
});

t.test('close() ends an h2 session with streams open', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port);
  const client = connect2(t, front.port);
  const held = client.request({ ':path': '/hold', ':authority': 'shop.example' });
  held.on('error', () => {});
  await once(held, 'response');
  const gone = closed(client);
  front.sessions[0]?.close('policy changed');
  await gone;
  t.same(await front.outcomes[0], { requests: 1, denied: 0, error: 'policy changed' });
  while (upstream.closedStreams.length === 0) await sleep(5);
  t.not(upstream.closedStreams[0]?.rstCode, 0, 'the held upstream stream was reset, not completed');
});

t.test('an idle h2 connection gets GOAWAY after idleTimeoutMs and ends cleanly', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port, { idleTimeoutMs: 200 });
  const client = connect2(t, front.port);
  t.equal((await request2(client, { ':path': '/x' })).headers[':status'], 200);
  const [code] = (await once(client, 'goaway')) as [number];
  t.equal(code, 0, 'GOAWAY(NO_ERROR)');
  client.close();
  t.same(await front.outcomes[0], { requests: 1, denied: 0, error: '' });
});

t.test('an empty upload that ends while the upstream is still being dialled reaches the pod ended', async (t) => {
  // curl's `--data-binary @/dev/null`: HEADERS without END_STREAM, then an empty DATA frame with
  // END_STREAM. The body has ended before the first upstream dial completes.
  const upstream = await startHttp2Upstream(t);
  const slowDial = (): Promise<net.Socket> => sleep(100).then(() => new Promise((resolve, reject) => {
    const s = net.connect(upstream.port, LOOPBACK, () => resolve(s));
    s.once('error', reject);
  }));
  const front = await startFront(t, upstream.port, { dial: slowDial });
  const client = connect2(t, front.port);
  const call = await Promise.race([request2(client, grpcHeaders('/pkg.Echo/Say'), Buffer.alloc(0)), sleep(3000).then(() => undefined)]);
  t.ok(call, 'answered (not left waiting for an end the forwarder missed)');
  t.equal(call?.headers[':status'], 200);
  client.close();
});
