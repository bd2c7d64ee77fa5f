// Hostile peers against the HBONE server, over real TLS 1.3 with a valid workload certificate
// (the attacker is inside the mesh) and real sockets: malformed CONNECTs written frame by frame,
// streams reset at every stage, floods, idle and silent connections, clients that never read,
// TLS garbage, handlers that throw. Each must end in a 4xx, an RST_STREAM or a closed connection,
// never in an unhandled 'error' or rejection (tap fails the file on those), and a good tunnel must
// work afterwards.

import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { HboneConnection } from './client.ts';
import type { HboneServerOptions } from './server.ts';
import { SERVER_MAX_CONCURRENT_STREAMS } from './settings.ts';
import { connectTarget } from './target.ts';
import { FRAME, FLAG, frame, headerBlock, headersFrame, RawH2, rstStream, type HeaderField } from './testing/raw-h2.ts';
import { LOOPBACK, SERVER, startLoopbackTunnel, type LoopbackTunnel } from './testing/loopback-tunnel.ts';

async function start(t: Test, options: Partial<HboneServerOptions> = {}): Promise<LoopbackTunnel> {
  const tunnel = await startLoopbackTunnel(options);
  t.teardown(() => tunnel.close());
  return tunnel;
}

async function raw(t: Test, tunnel: LoopbackTunnel, opts: { preface?: boolean; ackSettings?: boolean } = {}): Promise<RawH2> {
  const connection = await RawH2.connect(tunnel.port, tunnel.clientCert.secureContext, opts);
  t.teardown(() => connection.destroy());
  return connection;
}

/** nghttp2 encodes `:status: 200` as static-table entry 8; any other first byte is another status. */
function answeredOk(connection: RawH2, streamId: number): boolean {
  return connection.frames.some((f) => f.streamId === streamId && f.type === FRAME.HEADERS && f.payload[0] === 0x88);
}

/** Resolves on 'close' (a refused handshake also emits 'error', which `once` would throw). */
function closed(socket: net.Socket | http2.Http2Stream): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

async function stillServes(t: Test, tunnel: LoopbackTunnel): Promise<void> {
  t.equal(await tunnel.roundTrip('after'), 'after', 'a good tunnel still works');
}

t.test('malformed CONNECT header sets: never a 200, the connection\'s other streams unharmed', async (t) => {
  const tunnel = await start(t);
  const good = `${LOOPBACK}:${tunnel.echoPort}`;
  const connect: HeaderField = [':method', 'CONNECT'];
  const many = (n: number): HeaderField[] => Array.from({ length: n }, (_, i) => [`x-${i}`, 'y']);
  const cases: [string, HeaderField[]][] = [
    ['no :authority', [connect]],
    ['no :method', [[':authority', good]]],
    ['two :authority', [connect, [':authority', good], [':authority', good]]],
    ['two :method', [connect, connect, [':authority', good]]],
    [':path on a CONNECT', [connect, [':authority', good], [':path', '/']]],
    [':scheme on a CONNECT', [connect, [':authority', good], [':scheme', 'https']]],
    [':protocol (extended CONNECT, not enabled)', [connect, [':authority', good], [':protocol', 'websocket']]],
    ['unknown pseudo-header', [connect, [':authority', good], [':x', '1']]],
    ['pseudo-header after a field', [connect, ['x', 'y'], [':authority', good]]],
    ['upper-case field name', [connect, [':authority', good], ['Baggage', 'x']]],
    ['connection-specific field', [connect, [':authority', good], ['connection', 'close']]],
    ['empty :authority', [connect, [':authority', '']]],
    ['NUL in :authority', [connect, [':authority', `${good}\0`]]],
    ['bytes above 0x7f in :authority', [connect, [':authority', Buffer.from([0xff, 0xfe, 0x3a, 0x38, 0x30])]]],
    ['host name', [connect, [':authority', 'checkout.shop:8080']]],
    ['userinfo', [connect, [':authority', `user@${good}`]]],
    ['IPv6 with a zone', [connect, [':authority', `[fe80::1%eth0]:${tunnel.echoPort}`]]],
    ['port 65536', [connect, [':authority', `${LOOPBACK}:65536`]]],
    ['port with a sign', [connect, [':authority', `${LOOPBACK}:+80`]]],
    ['leading zeros', [connect, [':authority', `${LOOPBACK}:080`]]],
    ['not the connection\'s destination', [connect, [':authority', `127.0.0.2:${tunnel.echoPort}`]]],
    ['GET', [[':method', 'GET'], [':authority', good], [':scheme', 'https'], [':path', '/']]],
    // Limits: at most 64 fields, at most 16 KiB of them.
    ['100 fields', [connect, [':authority', good], ...many(100)]],
    ['20 KiB of fields', [connect, [':authority', good], ['baggage', 'x'.repeat(20 * 1024)]]],
  ];
  const connection = await raw(t, tunnel);
  // One good stream stays open through all of it.
  connection.write(headersFrame(1, [connect, [':authority', good]]));
  t.equal(await connection.outcome(1), 'answered');
  let id = 3;
  for (const [what, fields] of cases) {
    const streamId = id;
    id += 2;
    const block = headerBlock(fields);
    // Header blocks above the default 16 KiB frame size go out as HEADERS + CONTINUATION.
    const first = block.subarray(0, 16_384);
    connection.write(frame(FRAME.HEADERS, block.length > first.length ? 0 : FLAG.END_HEADERS, streamId, first));
    for (let off = 16_384; off < block.length; off += 16_384) {
      connection.write(frame(FRAME.CONTINUATION, off + 16_384 >= block.length ? FLAG.END_HEADERS : 0, streamId, block.subarray(off, off + 16_384)));
    }
    const outcome = await connection.outcome(streamId);
    t.ok(outcome === 'answered' || outcome === 'reset', `${what}: ${outcome}`);
    t.notOk(answeredOk(connection, streamId), `${what}: not a 200`);
    if (connection.isClosed) break;
  }
  t.notOk(connection.isClosed, 'the connection survived every malformed stream');
  // The good stream still echoes.
  connection.write(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('ping')));
  t.ok(await connection.until((frames) => frames.some((f) => f.streamId === 1 && f.type === FRAME.DATA && f.payload.toString() === 'ping')), 'the good stream echoes');
  await stillServes(t, tunnel);
});

t.test('fields with NUL, CR or LF in their values never reach the handler', async (t) => {
  // RFC 9113 8.2.1 makes such a request malformed; nghttp2 drops the field instead, so neither
  // policy (baggage) nor the access log ever sees the bytes.
  const seen: http2.IncomingHttpHeaders[] = [];
  const tunnel = await start(t, {
    handler: async (request) => {
      seen.push(request.headers);
      const connected = await connectTarget(request.target, { signal: request.signal });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
  });
  const connection = await raw(t, tunnel);
  const good = `${LOOPBACK}:${tunnel.echoPort}`;
  connection.write(headersFrame(1, [[':method', 'CONNECT'], [':authority', good], ['baggage', 'k8s.pod.name=a\r\nx-injected: 1'], ['traceparent', 'a\0b'], ['x-ok', 'fine']]));
  t.equal(await connection.outcome(1), 'answered');
  t.equal(seen.length, 1);
  t.ok(answeredOk(connection, 1), 'the request itself is served');
  t.equal(seen[0]?.baggage, undefined, 'the CR LF field was dropped');
  t.equal(seen[0]?.traceparent, undefined, 'the NUL field was dropped');
  t.equal(seen[0]?.['x-ok'], 'fine', 'the others arrived');
  await stillServes(t, tunnel);
});

t.test('a header block larger than a frame without CONTINUATION closes the connection', async (t) => {
  const tunnel = await start(t);
  const connection = await raw(t, tunnel);
  connection.write(headersFrame(1, [[':method', 'CONNECT'], [':authority', `${LOOPBACK}:${tunnel.echoPort}`], ['x', 'a'.repeat(100_000)]]));
  t.equal(await connection.outcome(1), 'connection-closed');
  await stillServes(t, tunnel);
});

t.test('streams reset before the dial, during it and mid-splice', async (t) => {
  const dialStarted = Promise.withResolvers<void>();
  const dialAborted = Promise.withResolvers<void>();
  const slowDial: HboneServerOptions['handler'] = async (request) => {
    if (request.target.port === 1) {
      // A destination that takes its time: wait for the stream to go away.
      dialStarted.resolve();
      await new Promise<void>((resolve) => request.signal.addEventListener('abort', () => resolve(), { once: true }));
      dialAborted.resolve();
      return { action: 'unreachable', reason: 'ABORTED' };
    }
    const connected = await connectTarget(request.target, { signal: request.signal });
    return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
  };
  const tunnel = await start(t, { handler: slowDial });
  const connection = await raw(t, tunnel);
  const good = `${LOOPBACK}:${tunnel.echoPort}`;

  // Before the dial: HEADERS and RST_STREAM in one write.
  connection.write(Buffer.concat([headersFrame(1, [[':method', 'CONNECT'], [':authority', good]]), rstStream(1)]));
  // During it.
  connection.write(headersFrame(3, [[':method', 'CONNECT'], [':authority', `${LOOPBACK}:1`]]));
  await dialStarted.promise;
  connection.write(rstStream(3));
  await dialAborted.promise;
  t.pass('the handler saw its signal abort when the stream was reset during the dial');
  // Mid-splice.
  connection.write(headersFrame(5, [[':method', 'CONNECT'], [':authority', good]]));
  t.equal(await connection.outcome(5), 'answered');
  connection.write(frame(FRAME.DATA, 0, 5, Buffer.from('half a request')));
  await sleep(50);
  connection.write(rstStream(5));
  for (let i = 0; i < 50 && tunnel.server.stats().streamsOpen > 0; i++) await sleep(20);
  t.equal(tunnel.server.stats().streamsOpen, 0, 'the spliced stream is gone');
  t.match(tunnel.events.find((e) => e.type === 'stream-closed'), { result: { end: 'stream-reset' } });
  t.ok(tunnel.server.stats().streamsAbandoned >= 1, 'streams reset before their answer are counted as abandoned');
  t.notOk(tunnel.events.some((e) => e.type === 'stream-rejected'), 'and not reported as refusals');
  t.notOk(connection.isClosed);
  await stillServes(t, tunnel);
});

t.test('a flood of opened-and-reset streams: the connection is closed, nothing is reported per stream', async (t) => {
  const tunnel = await start(t);
  const connection = await raw(t, tunnel);
  const good = `${LOOPBACK}:${tunnel.echoPort}`;
  const burst: Buffer[] = [];
  for (let i = 0; i < 5000; i++) burst.push(headersFrame(1 + 2 * i, [[':method', 'CONNECT'], [':authority', good]]), rstStream(1 + 2 * i));
  connection.write(Buffer.concat(burst));
  await Promise.race([connection.closed(), sleep(5000)]);
  t.ok(connection.isClosed || connection.frames.some((f) => f.type === FRAME.GOAWAY), 'the server closed the connection (rapid-reset protection)');
  t.equal(tunnel.events.filter((e) => e.type === 'stream-rejected').length, 0, 'no refusal events for streams nobody waits for');
  await stillServes(t, tunnel);
});

t.test('more streams at once than SETTINGS_MAX_CONCURRENT_STREAMS: the excess is refused', async (t) => {
  const tunnel = await start(t);
  const connection = await raw(t, tunnel);
  const good = `${LOOPBACK}:${tunnel.echoPort}`;
  const total = SERVER_MAX_CONCURRENT_STREAMS + 200;
  const burst: Buffer[] = [];
  for (let i = 0; i < total; i++) burst.push(headersFrame(1 + 2 * i, [[':method', 'CONNECT'], [':authority', good]]));
  connection.write(Buffer.concat(burst));
  const settled = (): number => new Set(connection.frames.filter((f) => f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM).map((f) => f.streamId)).size;
  await connection.until(() => settled() >= total || connection.frames.some((f) => f.type === FRAME.GOAWAY), 10_000);
  const answered = connection.frames.filter((f) => f.type === FRAME.HEADERS).length;
  t.ok(answered <= SERVER_MAX_CONCURRENT_STREAMS, `at most ${SERVER_MAX_CONCURRENT_STREAMS} streams answered (${answered})`);
  t.ok(tunnel.server.stats().streamsOpen <= SERVER_MAX_CONCURRENT_STREAMS);
  connection.destroy();
  await stillServes(t, tunnel);
});

t.test('connections that open no stream are closed: silent after TLS, idle after the preface, idle after their streams', async (t) => {
  const tunnel = await start(t, { handshakeTimeoutMs: 300, sessionIdleTimeoutMs: 400 });
  const silent = await raw(t, tunnel, { preface: false, ackSettings: false });
  const idle = await raw(t, tunnel);
  const used = await raw(t, tunnel);
  used.write(headersFrame(1, [[':method', 'CONNECT'], [':authority', `${LOOPBACK}:${tunnel.echoPort}`]], { endStream: true }));
  t.equal(await used.outcome(1), 'answered');
  const started = Date.now();
  await Promise.race([Promise.all([silent.closed(), idle.closed()]), sleep(3000)]);
  const elapsed = Date.now() - started;
  t.ok(silent.isClosed && idle.isClosed, `silent and idle connections closed (after ${elapsed} ms)`);
  t.notOk(used.isClosed, 'a connection that just carried a stream is still open');
  await Promise.race([used.closed(), sleep(3000)]);
  t.ok(used.frames.some((f) => f.type === FRAME.GOAWAY), 'and gets a GOAWAY once idle for sessionIdleTimeoutMs');
  t.ok(tunnel.server.stats().connectionsIdleClosed >= 2);
  await stillServes(t, tunnel);
});

t.test('a client that never reads: the destination is held back by flow control, not buffered', async (t) => {
  let written = 0;
  const destinationDone = Promise.withResolvers<void>();
  const firehose = net.createServer((socket) => {
    socket.on('error', () => destinationDone.resolve());
    socket.on('close', () => destinationDone.resolve());
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (written < 256 * 1024 * 1024 && socket.write(chunk)) written += chunk.length;
      if (written < 256 * 1024 * 1024) socket.once('drain', () => ((written += chunk.length), pump()));
    };
    pump();
  });
  firehose.listen(0, LOOPBACK);
  await once(firehose, 'listening');
  t.teardown(() => firehose.close());
  const tunnel = await start(t);
  const connection = await HboneConnection.connect({ address: { ip: LOOPBACK, port: tunnel.port }, secureContext: tunnel.clientCert.secureContext, expectedIdentity: SERVER });
  t.teardown(() => connection.destroy());
  const stream = await connection.openStream({ ip: LOOPBACK, port: (firehose.address() as net.AddressInfo).port });
  stream.pause();
  await sleep(1000);
  // The client's windows (16 MiB stream and session) plus socket buffers on both hops.
  t.ok(written < 80 * 1024 * 1024, `the destination could write only ${Math.round(written / 1048576)} MiB`);
  await stillServes(t, tunnel);
  connection.destroy();
  await destinationDone.promise;
  t.pass('the destination connection closed with the tunnel');
});

t.test('TLS garbage, no client certificate, another ALPN: the connection is refused', async (t) => {
  const tunnel = await start(t);
  const refusals = (): number => tunnel.server.stats().connectionsRefused;
  const send = async (bytes: Buffer): Promise<void> => {
    const socket = net.connect(tunnel.port, LOOPBACK);
    socket.on('error', () => {});
    socket.resume();
    socket.end(bytes);
    await closed(socket);
  };
  await send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await send(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
  await send(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, ...Buffer.alloc(64, 0x41)]));
  const noCert = tls.connect({ host: LOOPBACK, port: tunnel.port, ALPNProtocols: ['h2'], rejectUnauthorized: false });
  noCert.on('error', () => {});
  noCert.resume();
  await closed(noCert);
  const http11 = tls.connect({ host: LOOPBACK, port: tunnel.port, secureContext: tunnel.clientCert.secureContext, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
  http11.on('error', () => {});
  http11.resume();
  await closed(http11);
  t.ok(refusals() >= 5, `every one refused (${refusals()})`);
  await stillServes(t, tunnel);
});

t.test('a handler or L7 server that throws resets its stream only', async (t) => {
  const tunnel = await start(t, {
    handler: async (request) => {
      if (request.target.port === 2) throw new Error('handler bug');
      if (request.target.port === 3) return { action: 'serve', serve: () => Promise.reject(new Error('l7 bug')) };
      const connected = await connectTarget(request.target, { signal: request.signal });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
    onEvent: () => {
      throw new Error('observer bug');
    },
  });
  const connection = await HboneConnection.connect({ address: { ip: LOOPBACK, port: tunnel.port }, secureContext: tunnel.clientCert.secureContext, expectedIdentity: SERVER });
  t.teardown(() => connection.destroy());
  const status = async (port: number): Promise<string> => {
    const stream = connection.session.request({ ':method': 'CONNECT', ':authority': `${LOOPBACK}:${port}` }, { endStream: false });
    stream.on('error', () => {});
    let status = 'no answer';
    stream.once('response', (headers: http2.IncomingHttpHeaders) => (status = String(headers[':status'])));
    await closed(stream);
    return stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? status : `reset after ${status}`;
  };
  t.equal(await status(2), '503', 'a throwing handler is a 503');
  t.match(await status(3), /^reset after 200$/, 'a failing L7 server resets its stream');
  t.notOk(connection.session.closed || connection.session.destroyed, 'the connection stays');
  await stillServes(t, tunnel);
});
