// The client side as an inbound HBONE tunnel hands it over: not a socket but the server side of an
// HTTP/2 CONNECT stream (no remoteAddress, no setNoDelay). A real local HTTP/2 server answers the
// CONNECT and gives its stream to serveHttp(); the test speaks HTTP/1.1 and h2 inside the tunnel.
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import t from 'tap';
import { agentOverStream, closed, grpcFrame, parseGrpcFrames, request1, request2, startHttp1Upstream, startHttp2Upstream, startTunnel } from './test-fixtures.ts';

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

// Also the regression test of writev-guard.ts: without it, Node's HTTP/1 server writing to an
// Http2Stream sends corrupted status lines and the first request here fails to parse.
t.test('HTTP/1.1 inside a tunnel stream: keep-alive, a denial, a streamed body', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const tunnel = await startTunnel(t, upstream.port);
  const stream = await tunnel.open();
  const agent = agentOverStream(t, stream);

  const ok = await request1(agent, 0, { path: '/items' });
  t.equal(ok.status, 200);
  const denied = await request1(agent, 0, { path: '//admin' });
  t.equal(denied.status, 403);
  t.equal(denied.body.toString(), 'access denied: admin is off limits');
  const payload = randomBytes(4 * 1024 * 1024);
  const echoed = await request1(agent, 0, { method: 'POST', path: '/stream', body: payload });
  t.equal(sha256(echoed.body), sha256(payload), '4 MiB echoed intact through the tunnel');
  t.equal(echoed.trailers['x-bytes'], String(payload.length));

  t.equal(tunnel.sessions.length, 1, 'all over the one tunnel stream');
  t.equal(upstream.connections(), 1);
  t.same(
    tunnel.records.map((r) => [r.req.path, r.status]),
    [
      ['/items', 200],
      ['/admin', 403],
      ['/stream', 200],
    ],
  );
  stream.end();
  t.same(await tunnel.outcomes[0], { requests: 3, denied: 1, error: '' }, 'the tunnel stream ending ends the session');
});

t.test('h2 and gRPC inside a tunnel stream: multiplexed allowed and denied calls', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const tunnel = await startTunnel(t, upstream.port);
  const stream = await tunnel.open();
  const inner = http2.connect('http://inner.invalid', { createConnection: () => stream });
  inner.on('error', () => {});
  t.teardown(() => inner.destroy());

  const grpc = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };
  const [call, denied] = await Promise.all([
    request2(inner, { ...grpc, ':path': '/pkg.Echo/Say' }, grpcFrame(Buffer.from('through'))),
    request2(inner, { ...grpc, ':path': '/admin/pkg.Echo/Say' }, grpcFrame(Buffer.from('nope'))),
  ]);
  t.same(
    parseGrpcFrames(call.body).map((m) => m.toString()),
    ['echo:through'],
  );
  t.equal(call.trailers?.['grpc-status'], '0');
  t.equal(denied.headers[':status'], 200);
  t.equal(denied.headers['grpc-status'], '7');
  t.equal((await request2(inner, { ':path': '/plain' })).headers[':status'], 200, 'and plain h2 on the same inner connection');
  t.equal(upstream.sessions(), 1);
  t.equal(tunnel.records.length, 3);
});

t.test('close() on a tunnelled session ends the tunnel stream', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const tunnel = await startTunnel(t, upstream.port);
  const stream = await tunnel.open();
  stream.on('error', () => {});
  const agent = agentOverStream(t, stream);
  t.equal((await request1(agent, 0, { path: '/x' })).status, 200);
  const streamClosed = closed(stream);
  tunnel.sessions[0]?.close('policy changed');
  await streamClosed;
  t.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL, 'the tunnel stream was reset (CANCEL), not ended');
  t.same(await tunnel.outcomes[0], { requests: 1, denied: 0, error: 'policy changed' });
});
