// Finding 4 of the hostile-input review: what one client connection may hold. A slow-header client
// over a real socket and a real HBONE tunnel is cut off, a keep-alive connection idle between
// requests is not; oversized heads, deep pipelines and too many h2 streams are refused.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { CLIENT_START, FLAG, FRAME, frame, headerBlock, rawH2Exchange } from './h2-raw.ts';
import { startHboneFront } from './hbone-fixture.ts';
import { LOOPBACK, closed, connect2, rawExchange, startFront, startHttp1Upstream, startHttp2Upstream } from './test-fixtures.ts';

const limits = { headersTimeoutMs: 400 };

/** A client that sends a head one field at a time, every `everyMs`, and never finishes it. */
function dripHead(write: (s: string) => void, everyMs: number): NodeJS.Timeout {
  write('GET /x HTTP/1.1\r\nhost: shop.example\r\n');
  let n = 0;
  return setInterval(() => write(`x-drip-${n++}: y\r\n`), everyMs);
}

t.test('a slow-header client on a socket gets 408 and the connection closes; idle keep-alive is left alone', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { limits });
  const socket = net.connect({ host: LOOPBACK, port: front.port });
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.write('GET /first HTTP/1.1\r\nhost: shop.example\r\n\r\n');
  await sleep(700); // idle, longer than the header timeout: not a slow head
  t.match(Buffer.concat(received).toString(), /^HTTP\/1.1 200 /, 'the first request was answered');
  const started = performance.now();
  const drip = dripHead((s) => socket.write(s), 100);
  t.teardown(() => clearInterval(drip));
  await closed(socket);
  clearInterval(drip);
  const elapsed = performance.now() - started;
  t.ok(elapsed >= 350 && elapsed < 3000, `closed after ${Math.round(elapsed)} ms of dripping`);
  t.match(Buffer.concat(received).toString(), /HTTP\/1.1 408 Request Timeout/);
  t.match((await front.outcomes[0])?.error, /request header timeout/);
});

t.test('a slow-header client inside a real HBONE tunnel: its stream is closed', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startHboneFront(t, upstream.port, { limits });
  const stream = await front.open();
  stream.on('error', () => {});
  const received: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => received.push(chunk));
  const drip = dripHead((s) => !stream.destroyed && stream.write(s), 100);
  t.teardown(() => clearInterval(drip));
  await closed(stream);
  clearInterval(drip);
  t.match(Buffer.concat(received).toString(), /HTTP\/1.1 408 /);
});

t.test('a client that starts the h2 preface and stalls is cut off', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { limits });
  const socket = net.connect({ host: LOOPBACK, port: front.port });
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  socket.write('PRI * HTTP/2.0\r\n');
  const started = performance.now();
  await closed(socket);
  t.ok(performance.now() - started < 3000);
  t.match((await front.outcomes[0])?.error, /request header timeout/);
});

t.test('a head larger than maxHeaderBytes gets 431', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { limits: { maxHeaderBytes: 4096 } });
  const answer = await rawExchange(front.port, `GET /x HTTP/1.1\r\nhost: shop.example\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n`);
  t.match(answer, /^HTTP\/1.1 431 /);
  const fits = await rawExchange(front.port, `GET /x HTTP/1.1\r\nhost: shop.example\r\nx-big: ${'a'.repeat(3000)}\r\nconnection: close\r\n\r\n`);
  t.match(fits, /^HTTP\/1.1 200 /);
});

t.test('pipelined requests beyond maxPipelinedRequests get 503, in order, the rest are served', async (t) => {
  const upstream = await startHttp1Upstream(t);
  const front = await startFront(t, upstream.port, { limits: { maxPipelinedRequests: 2 } });
  const requests = Array.from({ length: 6 }, (_, i) => `GET /r${i} HTTP/1.1\r\nhost: shop.example\r\n${i === 5 ? 'connection: close\r\n' : ''}\r\n`);
  const answer = await rawExchange(front.port, requests.join(''));
  const statuses = [...answer.matchAll(/HTTP\/1.1 (\d{3})/g)].map((m) => Number(m[1]));
  // One forwarded at once plus two queued; the rest of the same read are refused.
  t.same(statuses, [200, 200, 200, 503, 503, 503]);
  t.same(
    upstream.seen.map((r) => r.url),
    ['/r0', '/r1', '/r2'],
  );
});

t.test('HTTP/2: the stream limit is announced and enforced', async (t) => {
  const upstream = await startHttp2Upstream(t);
  const front = await startFront(t, upstream.port, { limits: { maxConcurrentStreams: 2 } });
  const session = connect2(t, front.port);
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  t.equal(session.remoteSettings.maxConcurrentStreams, 2);
  const hold = (id: number): Buffer => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/hold'], [':authority', 'shop.example']]));
  const answer = await rawH2Exchange(front.port, CLIENT_START, 500, Buffer.concat([hold(1), hold(3), hold(5)]));
  // nghttp2 answers a client that exceeds the acknowledged limit with GOAWAY(PROTOCOL_ERROR)
  // naming the last stream it took; RFC 9113 5.1.2 also allows a reset of that stream.
  const goaway = answer.frames.find((f) => f.type === FRAME.GOAWAY);
  const reset = answer.frames.some((f) => f.type === FRAME.RST_STREAM && f.streamId === 5);
  t.ok(reset || goaway?.payload.readUInt32BE(0) === 3, 'the third concurrent stream is refused');
  t.ok(upstream.seen.length <= 2, 'it never reached the pod');
});
