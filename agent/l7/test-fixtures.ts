// Real parts for the L7 tests, all on loopback: upstream servers (HTTP/1.1, h2c, gRPC-style), a
// front listener that hands each accepted socket to serveHttp(), an HTTP/2 CONNECT tunnel whose
// server-side stream becomes the client duplex, and small clients that return what they saw.

import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Test } from 'tap';
import { serveHttp } from './serve.ts';
import type { HttpRequestInfo, L7Options, L7Outcome, L7Session, RequestRecord, RequestVerdict } from './types.ts';

export const LOOPBACK = '127.0.0.1';

/** Resolves on 'close' (events.once would reject on an 'error' emitted first, e.g. a reset). */
export const closed = (emitter: NodeJS.EventEmitter): Promise<void> => new Promise((resolve) => emitter.once('close', () => resolve()));

export async function listen(t: Test, server: net.Server | http2.Http2Server): Promise<number> {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

/** Tracks a server's sockets so that teardown can end keep-alive connections the test left open. */
function trackSockets(t: Test, server: net.Server | http2.Http2Server): { connections: () => number } {
  const sockets = new Set<net.Socket>();
  let count = 0;
  server.on('connection', (socket: net.Socket) => {
    count += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  t.teardown(() => sockets.forEach((socket) => socket.destroy()));
  return { connections: () => count };
}

/** Denies `/admin` and everything under it; allows the rest. */
export const denyAdmin = (req: HttpRequestInfo): RequestVerdict =>
  req.path === '/admin' || req.path.startsWith('/admin/') ? { allow: false, reason: 'admin is off limits' } : { allow: true };

// Upstreams --------------------------------------------------------------------------------------

export type SeenRequest = { method: string; url: string; headers: http.IncomingHttpHeaders };

export type Http1Upstream = { port: number; seen: SeenRequest[]; connections: () => number };

/**
 * An HTTP/1.1 backend:
 *   /stream    answers at once and echoes the request body as it arrives, then trailers x-bytes
 *   /big/<n>   n bytes of body
 *   /cut       headers and a few bytes, then a TCP reset
 *   /hangup    closes the connection without answering
 *   anything else: a JSON echo of method, url and headers
 * and a WebSocket-ish upgrade that echoes bytes after its 101.
 */
export async function startHttp1Upstream(t: Test): Promise<Http1Upstream> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = req.url ?? '';
    if (url === '/stream') {
      // A HEAD response has no body, so no chunked encoding and no trailers (Node throws).
      res.writeHead(200, { 'content-type': 'application/octet-stream', ...(req.method === 'HEAD' ? {} : { trailer: 'x-bytes' }) });
      res.flushHeaders();
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (!res.write(chunk)) req.pause();
      });
      res.on('drain', () => req.resume());
      req.on('end', () => {
        if (req.method !== 'HEAD') res.addTrailers({ 'x-bytes': String(bytes) });
        res.end();
      });
      return;
    }
    if (url.startsWith('/big/')) {
      const size = Number(url.slice('/big/'.length));
      res.writeHead(200, { 'content-length': size });
      res.end(Buffer.alloc(size, 0x61));
      return;
    }
    if (url === '/cut') {
      res.writeHead(200, { 'content-length': 1000 });
      res.write('partial');
      setTimeout(() => req.socket.resetAndDestroy(), 20);
      return;
    }
    if (url === '/hangup') {
      req.socket.destroy();
      return;
    }
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  const { connections } = trackSockets(t, server);
  const port = await listen(t, server);
  return { port, seen, connections };
}

export type Http2Upstream = {
  port: number;
  seen: http2.IncomingHttpHeaders[];
  sessions: () => number;
  closedStreams: { path: string; rstCode: number }[];
  /** Closes every session gracefully (GOAWAY), as a pod shutting down does. */
  goAway: () => void;
};

/**
 * An h2c backend:
 *   /stream          answers at once, echoes the body, trailers x-bytes and x-request-trailer (the
 *                    value of the request trailer x-checksum)
 *   /cut             headers and a few bytes, then RST_STREAM(INTERNAL_ERROR) (no END_STREAM)
 *   /refuse          RST_STREAM(REFUSED_STREAM) before any answer
 *   /hold            answers headers and waits (for client-reset tests)
 *   /pkg.Echo/Say    gRPC: answers each request message with "echo:" + message, grpc-status 0
 *   /pkg.Echo/Fail   gRPC: trailers-only grpc-status 5 (NOT_FOUND)
 *   anything else:   JSON echo of the request headers
 */
export async function startHttp2Upstream(t: Test): Promise<Http2Upstream> {
  const seen: http2.IncomingHttpHeaders[] = [];
  const closedStreams: { path: string; rstCode: number }[] = [];
  const server = http2.createServer();
  let sessions = 0;
  const open = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions += 1;
    open.add(session);
    session.once('close', () => open.delete(session));
  });
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    const path = headers[':path'] ?? '';
    stream.on('error', () => {});
    stream.once('close', () => closedStreams.push({ path, rstCode: stream.rstCode ?? -1 }));
    if (path === '/stream') {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      let bytes = 0;
      let requestTrailer = '';
      stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
      stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => (requestTrailer = String(trailers['x-checksum'] ?? '')));
      stream.once('wantTrailers', () => stream.sendTrailers({ 'x-bytes': String(bytes), 'x-request-trailer': requestTrailer }));
      stream.pipe(stream);
      return;
    }
    if (path === '/cut') {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      // destroy(error) sends RST_STREAM(INTERNAL_ERROR) alone; close(code) would end the stream first.
      setTimeout(() => stream.destroy(new Error('cut')), 20);
      return;
    }
    if (path === '/refuse') {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (path === '/hold') {
      stream.respond({ ':status': 200 });
      stream.write('held');
      return;
    }
    if (path === '/pkg.Echo/Say') {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (stream.destroyed || stream.closed) return; // see the JSON echo below
        const messages = parseGrpcFrames(Buffer.concat(chunks)).map((m) => grpcFrame(Buffer.concat([Buffer.from('echo:'), m])));
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }));
        stream.end(Buffer.concat(messages));
      });
      return;
    }
    if (path === '/pkg.Echo/Fail') {
      stream.resume();
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no such thing' }, { endStream: true });
      return;
    }
    stream.resume();
    stream.on('end', () => {
      // 'end' also comes on a stream the agent has just reset; there is nobody to answer then.
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify(headers));
    });
  });
  trackSockets(t, server);
  const port = await listen(t, server);
  return { port, seen, sessions: () => sessions, closedStreams, goAway: () => open.forEach((session) => session.close()) };
}

// gRPC framing: a 1-byte compressed flag, a 4-byte big-endian length, the message ---------------

export function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

export function parseGrpcFrames(data: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  for (let at = 0; at + 5 <= data.length; ) {
    const length = data.readUInt32BE(at + 1);
    messages.push(data.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}

// The proxy under test ---------------------------------------------------------------------------

export type Front = {
  port: number;
  sessions: L7Session[];
  outcomes: Promise<L7Outcome>[];
  records: RequestRecord[];
  /** Upstream sockets the sessions dialled. */
  dials: () => number;
};

export type FrontOptions = Partial<Pick<L7Options, 'authorize' | 'idleTimeoutMs' | 'limits' | 'path'>> & { dial?: L7Options['dial'] };

/** A TCP listener handing every accepted socket to serveHttp(), dialling `upstreamPort`. */
export async function startFront(t: Test, upstreamPort: number, options: FrontOptions = {}): Promise<Front> {
  const sessions: L7Session[] = [];
  const outcomes: Promise<L7Outcome>[] = [];
  const records: RequestRecord[] = [];
  let dials = 0;
  const dial =
    options.dial ??
    (() => {
      dials += 1;
      return dialTcp(upstreamPort);
    });
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    const session = serveHttp(socket, {
      dial,
      authorize: options.authorize ?? denyAdmin,
      onRequest: (record) => records.push(record),
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(options.limits !== undefined ? { limits: options.limits } : {}),
      ...(options.path !== undefined ? { path: options.path } : {}),
    });
    sessions.push(session);
    outcomes.push(session.done);
  });
  t.teardown(() => sessions.forEach((session) => session.close('test over')));
  const port = await listen(t, server);
  return { port, sessions, outcomes, records, dials: () => dials };
}

export function dialTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port, noDelay: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

// Clients ----------------------------------------------------------------------------------------

export type Response1 = { status: number; headers: http.IncomingHttpHeaders; body: Buffer; trailers: NodeJS.Dict<string> };

/** One request on the agent's kept-alive connection; the agent allows a single socket. */
export function request1(
  agent: http.Agent,
  port: number,
  o: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string; host?: string },
): Promise<Response1> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host: LOOPBACK, port, method: o.method ?? 'GET', path: o.path, headers: { host: o.host ?? 'shop.example', ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

export function keepAliveAgent(t: Test): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  return agent;
}

export type Response2 = { headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders | undefined };

export function request2(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | string): Promise<Response2> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':authority': 'shop.example', ...headers }, { endStream: body === undefined });
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (response = h));
    stream.on('trailers', (h: http2.IncomingHttpHeaders) => (trailers = h));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ headers: response, body: Buffer.concat(chunks), trailers }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

export function connect2(t: Test, port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://${LOOPBACK}:${port}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  return session;
}

/** Sends raw bytes on a new connection and returns everything the server sent until it closed. */
export function rawExchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(data);
  });
}

// An HBONE-like tunnel ---------------------------------------------------------------------------

export type Tunnel = {
  /** Opens a CONNECT stream; its server side is handed to serveHttp(). Resolves with the client side. */
  open(): Promise<http2.ClientHttp2Stream>;
  sessions: L7Session[];
  outcomes: Promise<L7Outcome>[];
  records: RequestRecord[];
};

/**
 * A local HTTP/2 server answering CONNECT with 200 and handing the server-side stream to
 * serveHttp(), and a client session to it: the shape of an inbound HBONE stream, without the TLS.
 */
export async function startTunnel(t: Test, upstreamPort: number, authorize: L7Options['authorize'] = denyAdmin, options: Pick<L7Options, 'limits' | 'idleTimeoutMs' | 'path'> = {}): Promise<Tunnel> {
  const sessions: L7Session[] = [];
  const outcomes: Promise<L7Outcome>[] = [];
  const records: RequestRecord[] = [];
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    const session = serveHttp(stream, { ...options, dial: () => dialTcp(upstreamPort), authorize, onRequest: (r) => records.push(r) });
    sessions.push(session);
    outcomes.push(session.done);
  });
  trackSockets(t, server);
  const port = await listen(t, server);
  const client = http2.connect(`http://${LOOPBACK}:${port}`);
  client.on('error', () => {});
  t.teardown(() => {
    sessions.forEach((session) => session.close('test over'));
    client.destroy();
  });
  const open = (): Promise<http2.ClientHttp2Stream> =>
    new Promise((resolve, reject) => {
      const stream = client.request({ ':method': 'CONNECT', ':authority': '10.0.0.7:8080' });
      stream.once('response', () => resolve(stream));
      stream.once('error', reject);
    });
  return { open, sessions, outcomes, records };
}

/**
 * Node's http.Agent keeps a connection alive only if it looks like a net.Socket; a tunnel stream
 * has no ref/unref/keepalive/Nagle, so no-ops stand in (client side of the test only).
 */
export function agentOverStream(t: Test, stream: Duplex): http.Agent {
  Object.assign(stream, { ref() {}, unref() {}, setKeepAlive() {}, setNoDelay() {} });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => stream;
  t.teardown(() => agent.destroy());
  return agent;
}
