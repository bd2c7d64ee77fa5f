// End to end over 127.0.0.1 with real TLS 1.3 and real sockets: pool -> client -> (TCP) -> server
// -> destination, all with certificates from the real mesh CA.

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { HboneConnection } from './client.ts';
import { HboneError } from './errors.ts';
import { HbonePool } from './pool.ts';
import { HboneServer, type HboneServerEvent, type HboneServerOptions, type InboundRequest } from './server.ts';
import { resetStream, splice, type SpliceResult } from './splice.ts';
import { connectTarget } from './target.ts';
import { createTestMesh } from './test-fixtures.ts';

const { NGHTTP2_CANCEL } = http2.constants;
const LOOPBACK = '127.0.0.1';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';

const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);

async function listen(t: Test, server: net.Server): Promise<number> {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

/** A destination that echoes, half-close included (allowHalfOpen: its FIN follows ours). */
async function startEcho(t: Test): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  t.teardown(() => sockets.forEach((socket) => socket.destroy()));
  return listen(t, server);
}

type TunnelServer = { server: HboneServer; port: number; requests: InboundRequest[]; events: HboneServerEvent[] };

/** An HboneServer behind a TCP listener; the listener reports the original destination. */
async function startTunnelServer(t: Test, options: Partial<HboneServerOptions> = {}): Promise<TunnelServer> {
  const requests: InboundRequest[] = [];
  const events: HboneServerEvent[] = [];
  const server = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: async (request) => {
      requests.push(request);
      const connected = await connectTarget(request.target, { signal: request.signal });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
    onEvent: (event) => events.push(event),
    ...options,
  });
  const listener = net.createServer((socket) => server.handleConnection(socket, { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }));
  const port = await listen(t, listener);
  t.teardown(() => server.close({ graceMs: 100 }));
  return { server, port, requests, events };
}

function startPool(t: Test, port: number, options: { certificate?: WorkloadCertificate; maxStreamsPerConnection?: number; idleTimeoutMs?: number } = {}): HbonePool {
  const certificate = options.certificate ?? clientCert;
  const pool = new HbonePool({
    secureContextFor: (identity) => (identity === certificate.identity ? certificate.secureContext : undefined),
    hbonePort: port,
    maxStreamsPerConnection: options.maxStreamsPerConnection,
    idleTimeoutMs: options.idleTimeoutMs,
  });
  t.teardown(() => pool.close({ graceMs: 100 }));
  return pool;
}

function tunnel(pool: HbonePool, targetPort: number, destinationIdentity = SERVER): Promise<http2.ClientHttp2Stream> {
  return pool.open({ source: CLIENT, destinationIdentity, target: { ip: LOOPBACK, port: targetPort } });
}

/** Everything a stream delivers until its end (FIN / END_STREAM). */
async function readAll(stream: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function rejection(promise: Promise<unknown>): Promise<HboneError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof HboneError)) throw new Error(`expected an HboneError, got ${String(err)}`);
  return err;
}

/** Resolves when the stream has closed, however it closed (a reset also emits 'error'). */
function closed(stream: http2.Http2Stream): Promise<void> {
  return stream.closed && stream.destroyed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

t.test('a client in identity A reaches an echo server; the server sees identity A', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);

  const stream = await tunnel(pool, echo);
  stream.end('hello through the tunnel');
  t.equal((await readAll(stream)).toString(), 'hello through the tunnel');

  t.equal(tunnelServer.requests.length, 1);
  const [request] = tunnelServer.requests;
  t.equal(request?.peerIdentity, CLIENT, 'server saw the client identity from its certificate');
  t.equal(request?.localIdentity, SERVER);
  t.same(request?.target, { ip: LOOPBACK, port: echo });
});

t.test('data integrity: 8 MiB each way at once', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);
  const payload = randomBytes(8 * 1024 * 1024);

  const stream = await tunnel(pool, echo);
  const received = readAll(stream);
  // Odd-sized writes, so frame boundaries never line up with chunk boundaries.
  for (let offset = 0; offset < payload.length; offset += 100_003) {
    if (!stream.write(payload.subarray(offset, offset + 100_003))) await once(stream, 'drain');
  }
  stream.end();
  const echoed = await received;
  t.equal(echoed.length, payload.length);
  t.equal(sha256(echoed), sha256(payload), 'same bytes back');
});

t.test('half-close, client first: END_STREAM becomes a FIN, the reply still arrives', async (t) => {
  const serverSawFin = new Promise<string>((resolve) => {
    const destination = net.createServer({ allowHalfOpen: true }, (socket) => {
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.on('end', () => {
        resolve(received);
        socket.end(`got ${received.length} bytes`);
      });
    });
    void listen(t, destination).then((port) => (destinationPort.resolve(port), undefined));
  });
  const destinationPort = Promise.withResolvers<number>();
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);

  const stream = await tunnel(pool, await destinationPort.promise);
  stream.end('abcdef');
  t.equal(await serverSawFin, 'abcdef', 'the destination saw a FIN after the data');
  t.equal((await readAll(stream)).toString(), 'got 6 bytes', 'and could still answer');
});

t.test('half-close, destination first: FIN becomes END_STREAM, the client can still send', async (t) => {
  const lateData = Promise.withResolvers<string>();
  const destination = net.createServer({ allowHalfOpen: true }, (socket) => {
    let received = '';
    socket.end('bye early'); // FIN right away, keep reading
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('end', () => lateData.resolve(received));
  });
  const port = await listen(t, destination);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);

  const stream = await tunnel(pool, port);
  t.equal((await readAll(stream)).toString(), 'bye early', 'END_STREAM arrived');
  t.notOk(stream.closed, 'our direction is still open');
  stream.end('sent after their FIN');
  t.equal(await lateData.promise, 'sent after their FIN', 'the destination received it');
});

t.test('a TCP reset at the destination becomes RST_STREAM, and back', async (t) => {
  const destinationErrors: string[] = [];
  const destination = net.createServer((socket) => {
    socket.on('error', (err: NodeJS.ErrnoException) => destinationErrors.push(err.code ?? ''));
    socket.once('data', (chunk: Buffer) => {
      if (chunk.toString() === 'reset me') socket.resetAndDestroy();
    });
  });
  const port = await listen(t, destination);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);

  const first = await tunnel(pool, port);
  first.write('reset me');
  await closed(first);
  t.equal(first.rstCode, NGHTTP2_CANCEL, 'the client stream was reset');
  t.notOk(first.readableEnded, 'without END_STREAM first (which would read as a clean end)');

  const second = await tunnel(pool, port);
  second.write('hello');
  await sleep(50);
  resetStream(second);
  for (let i = 0; i < 50 && destinationErrors.length === 0; i++) await sleep(20);
  t.same(destinationErrors, ['ECONNRESET'], 'the destination saw a TCP reset');
});

t.test('many concurrent streams share one pooled connection', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);

  const streams = await Promise.all(Array.from({ length: 50 }, () => tunnel(pool, echo)));
  t.equal(pool.snapshot().length, 1, 'one pooled connection');
  t.equal(pool.snapshot()[0]?.streams, 50);
  t.equal(tunnelServer.server.stats().connectionsAccepted, 1, 'the server accepted one connection');
  const echoes = await Promise.all(
    streams.map(async (stream, i) => {
      stream.end(`stream ${i}`);
      return (await readAll(stream)).toString();
    }),
  );
  t.same(echoes, streams.map((_, i) => `stream ${i}`), 'each stream got its own data back');
});

t.test('past the per-connection stream limit another connection is opened', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port, { maxStreamsPerConnection: 4 });
  const streams = await Promise.all(Array.from({ length: 10 }, () => tunnel(pool, echo)));
  t.same(pool.snapshot().map((c) => c.streams).sort(), [2, 4, 4]);
  t.equal(tunnelServer.server.stats().connectionsAccepted, 3);
  streams.forEach((stream) => stream.end());
  await Promise.all(streams.map((stream) => readAll(stream)));
});

t.test('a client certificate from another CA is refused', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  // Same identity, issued by another CA; it trusts our root, so only the server can object.
  const issuedElsewhere = await (await createTestMesh()).issue(CLIENT);
  const impostor = tls.createSecureContext({ ...issuedElsewhere.tlsCredentials(), ca: serverCert.trustBundlePem });
  const pool = new HbonePool({ secureContextFor: () => impostor, hbonePort: tunnelServer.port });
  t.teardown(() => pool.close({ graceMs: 0 }));

  const err = await rejection(tunnel(pool, echo));
  t.ok(['STREAM_REFUSED', 'CONNECT_FAILED'].includes(err.code), `open failed (${err.code}: ${err.message})`);
  t.match(err.message, /alert|certificate|SSL/i, 'and the message points at TLS, not only at a closed stream');
  t.equal(tunnelServer.requests.length, 0, 'no stream reached the handler');
  const refused = tunnelServer.events.filter((e) => e.type === 'connection-refused');
  t.ok(refused.length >= 1, 'the server refused the connection');
  t.match(refused[0], { reason: /UNABLE_TO|CERT/ }, `because of the chain (${JSON.stringify(refused[0])})`);
});

t.test('a server presenting the wrong SPIFFE ID is refused by the client', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);
  const err = await rejection(tunnel(pool, echo, 'spiffe://cluster.local/ns/shop/sa/payments'));
  t.equal(err.code, 'PEER_IDENTITY_MISMATCH');
  t.match(err.message, SERVER);
  t.equal(tunnelServer.requests.length, 0);
  t.equal(pool.snapshot().length, 0, 'nothing pooled');
});

t.test('requests other than CONNECT get 405; a bad authority gets 400 without disturbing other streams', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const connection = await HboneConnection.connect({
    address: { ip: LOOPBACK, port: tunnelServer.port },
    secureContext: clientCert.secureContext,
    expectedIdentity: SERVER,
  });
  t.teardown(() => connection.destroy());

  const good = await connection.openStream({ ip: LOOPBACK, port: echo });
  good.write('before;');

  const status = async (headers: http2.OutgoingHttpHeaders): Promise<number> => {
    const stream = connection.session.request(headers, { endStream: false });
    stream.on('error', () => {});
    const [response] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    stream.resume();
    return Number(response[':status']);
  };
  t.equal(await status({ ':method': 'GET', ':path': '/', ':authority': `${LOOPBACK}:${echo}` }), 405, 'GET');
  t.equal(await status({ ':method': 'POST', ':path': '/', ':authority': `${LOOPBACK}:${echo}` }), 405, 'POST');
  t.equal(await status({ ':method': 'CONNECT', ':authority': 'checkout.shop:8080' }), 400, 'host name');
  t.equal(await status({ ':method': 'CONNECT', ':authority': `${LOOPBACK}:0` }), 400, 'port 0');
  t.equal(await status({ ':method': 'CONNECT', ':authority': `${LOOPBACK}` }), 400, 'no port');
  t.equal(await status({ ':method': 'CONNECT', ':authority': `127.0.0.2:${echo}` }), 400, "not the connection's destination");

  good.end('after');
  t.equal((await readAll(good)).toString(), 'before;after', 'the good stream was not disturbed');
  t.notOk(connection.session.closed || connection.session.destroyed, 'the connection is still open');
  t.equal(tunnelServer.server.stats().streamsRejected, 6);
});

t.test('handler decisions: 403 when denied, 503 when the destination is unreachable', async (t) => {
  const closedPort = await (async () => {
    const probe = net.createServer();
    probe.listen(0, LOOPBACK);
    await once(probe, 'listening');
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    return port;
  })();
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);
  const unreachable = await rejection(tunnel(pool, closedPort));
  t.equal(unreachable.code, 'TUNNEL_REJECTED');
  t.equal(unreachable.status, 503);

  const denying = await startTunnelServer(t, { handler: async () => ({ action: 'deny', status: 403, reason: 'policy' }) });
  const denied = await rejection(startPool(t, denying.port).open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: closedPort } }));
  t.equal(denied.status, 403);
  t.equal(pool.snapshot().length, 1, 'a rejected stream leaves the connection pooled');
});

t.test('an idle tunnelled stream is reset after the idle timeout', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t, { streamIdleTimeoutMs: 300 });
  const pool = startPool(t, tunnelServer.port);
  const stream = await tunnel(pool, echo);
  stream.write('ping');
  const started = Date.now();
  stream.resume();
  await once(stream, 'close');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 250 && elapsed < 2000, `closed after ${elapsed} ms`);
  t.equal(stream.rstCode, NGHTTP2_CANCEL);
  const closed = tunnelServer.events.find((e) => e.type === 'stream-closed');
  t.match(closed, { result: { end: 'idle-timeout' } });
});

t.test('an idle pooled connection is closed after the pool idle timeout', async (t) => {
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port, { idleTimeoutMs: 200 });
  const stream = await tunnel(pool, echo);
  stream.end('x');
  await readAll(stream);
  await once(stream, 'close');
  t.equal(pool.snapshot().length, 1, 'kept while idle');
  await sleep(400);
  t.equal(pool.snapshot().length, 0, 'closed once idle for the timeout');
  t.equal(tunnelServer.server.stats().connectionsOpen, 0, 'the server saw it close');
});

t.test('graceful drain: open streams finish, new ones go elsewhere, stragglers are reset at the deadline', async (t) => {
  const echo = await startEcho(t);
  // The straggler's destination records how its connection ended: a reset, not a clean FIN.
  const stragglerEnd = Promise.withResolvers<string>();
  const recording = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('end', () => stragglerEnd.resolve('FIN'));
    socket.on('error', (err: NodeJS.ErrnoException) => stragglerEnd.resolve(err.code ?? 'error'));
  });
  const recordingPort = await listen(t, recording);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);
  const finishing = await tunnel(pool, echo);
  const straggler = await tunnel(pool, recordingPort);
  finishing.write('one;');

  const started = Date.now();
  const closing = tunnelServer.server.close({ graceMs: 500 });
  await sleep(50);
  const refused = await rejection(tunnel(pool, echo));
  t.ok(['CONNECT_FAILED', 'STREAM_REFUSED'].includes(refused.code), `no new streams while draining (${refused.code})`);

  finishing.end('two');
  t.equal((await readAll(finishing)).toString(), 'one;two', 'the open stream finished normally');
  straggler.resume();
  await closing;
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 450, `close waited for the deadline (${elapsed} ms)`);
  await closed(straggler);
  t.not(straggler.rstCode, 0, `the straggler was reset (code ${straggler.rstCode})`);
  t.equal(await stragglerEnd.promise, 'ECONNRESET', "and its destination's connection too");
});

t.test('a pooled connection that closes is evicted and replaced', async (t) => {
  const echo = await startEcho(t);
  let current = new HboneServer({
    certificateFor: () => serverCert,
    handler: async (request) => {
      const connected = await connectTarget(request.target);
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
  });
  const first = current;
  const listener = net.createServer((socket) => current.handleConnection(socket, { ip: LOOPBACK, port: 0 }));
  const port = await listen(t, listener);
  const pool = startPool(t, port);

  const a = await tunnel(pool, echo);
  a.end('a');
  await readAll(a);
  await first.close({ graceMs: 0 });
  current = new HboneServer({ certificateFor: first === current ? () => serverCert : () => serverCert, handler: async (request) => {
    const connected = await connectTarget(request.target);
    return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
  } });
  t.teardown(() => current.close({ graceMs: 0 }));
  await sleep(50);
  t.equal(pool.snapshot().length, 0, 'the closed connection left the pool');
  const b = await tunnel(pool, echo);
  b.end('b');
  t.equal((await readAll(b)).toString(), 'b', 'a new connection carries the next stream');
  t.equal(current.stats().connectionsAccepted, 1);
});

t.test('splice on the client side: an application socket through the tunnel, both directions', async (t) => {
  // What the outbound path does: the application's TCP connection is spliced to a pool stream.
  const echo = await startEcho(t);
  const tunnelServer = await startTunnelServer(t);
  const pool = startPool(t, tunnelServer.port);
  const results: Promise<SpliceResult>[] = [];
  // Accepted without allowHalfOpen, as a careless listener would: splice must still carry the
  // application's half-close instead of closing the connection.
  const outbound = net.createServer((application) => {
    results.push(tunnel(pool, echo).then((stream) => splice(stream, application)));
  });
  const outboundPort = await listen(t, outbound);

  const application = net.connect({ host: LOOPBACK, port: outboundPort, allowHalfOpen: true });
  const payload = randomBytes(1024 * 1024);
  application.end(payload);
  const echoed = await readAll(application);
  t.equal(sha256(echoed), sha256(payload), 'the application got its bytes back after its own FIN');
  const [result] = await Promise.all(results);
  t.same(result, { end: 'closed', bytesToSocket: payload.length, bytesFromSocket: payload.length });

  // A reset by the application reaches the destination as a reset.
  const destinationEnd = Promise.withResolvers<string>();
  const destination = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('end', () => destinationEnd.resolve('FIN'));
    socket.on('error', (err: NodeJS.ErrnoException) => destinationEnd.resolve(err.code ?? 'error'));
  });
  const destinationPort = await listen(t, destination);
  const resetting = net.createServer((socket) => {
    results.push(tunnel(pool, destinationPort).then((stream) => splice(stream, socket)));
  });
  const resettingPort = await listen(t, resetting);
  const doomed = net.connect({ host: LOOPBACK, port: resettingPort });
  doomed.on('error', () => {});
  doomed.write('partial request');
  await sleep(100);
  doomed.resetAndDestroy();
  t.equal(await destinationEnd.promise, 'ECONNRESET', 'the destination saw a reset, not a FIN');
  t.match(await results[1], { end: 'socket-reset' });
});

t.test('cold start: a connection that arrives before its certificate waits for it, bounded', async (t) => {
  const echo = await startEcho(t);

  t.test('the certificate arrives within the wait: the tunnel opens, nothing is refused', async (t) => {
    let issued = false;
    const tunnelServer = await startTunnelServer(t, {
      certificateFor: () => (issued ? serverCert : undefined),
      certificateArrival: () => sleep(300).then(() => ((issued = true), serverCert)),
    });
    const pool = startPool(t, tunnelServer.port);
    const started = performance.now();
    const stream = await tunnel(pool, echo);
    const waited = performance.now() - started;
    stream.end('after the certificate');
    t.equal((await readAll(stream)).toString(), 'after the certificate');
    t.ok(waited >= 250, `the handshake waited for the certificate (${waited.toFixed(0)} ms)`);
    t.same(
      tunnelServer.events.filter((e) => e.type === 'connection-refused'),
      [],
      'no connection was refused',
    );
    t.equal(tunnelServer.server.awaitingCertificate, 0);
  });

  t.test('no certificate within the wait: refused with NO_CERTIFICATE at the deadline', async (t) => {
    const tunnelServer = await startTunnelServer(t, {
      certificateFor: () => undefined,
      certificateArrival: (_ip, signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(undefined))),
      certificateWaitMs: 400,
    });
    const pool = startPool(t, tunnelServer.port);
    const started = performance.now();
    await rejection(tunnel(pool, echo));
    const waited = performance.now() - started;
    t.ok(waited >= 350 && waited < 5000, `refused after the wait (${waited.toFixed(0)} ms)`);
    t.match(
      tunnelServer.events.filter((e) => e.type === 'connection-refused'),
      [{ reason: 'NO_CERTIFICATE' }],
    );
    t.equal(tunnelServer.server.awaitingCertificate, 0, 'nothing left waiting');
  });

  t.test('a destination with no certificate coming is refused at once', async (t) => {
    const tunnelServer = await startTunnelServer(t, { certificateFor: () => undefined, certificateArrival: () => undefined, certificateWaitMs: 5000 });
    const pool = startPool(t, tunnelServer.port);
    const started = performance.now();
    await rejection(tunnel(pool, echo));
    t.ok(performance.now() - started < 2000, 'without waiting');
    t.match(tunnelServer.events, [{ type: 'connection-refused', reason: 'NO_CERTIFICATE' }]);
  });

  t.test('a client that gives up while waiting leaves nothing behind', async (t) => {
    let arrivals = 0;
    const tunnelServer = await startTunnelServer(t, {
      certificateFor: () => undefined,
      certificateArrival: (_ip, signal) => {
        arrivals += 1;
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve(undefined)));
      },
      certificateWaitMs: 60_000,
    });
    const socket = net.connect({ host: LOOPBACK, port: tunnelServer.port });
    await once(socket, 'connect');
    while (arrivals === 0) await sleep(10);
    t.equal(tunnelServer.server.awaitingCertificate, 1, 'held while the certificate is awaited');
    socket.destroy();
    while (tunnelServer.server.awaitingCertificate > 0) await sleep(10);
    t.pass('released when the client went away, long before the wait ended');
  });
});
