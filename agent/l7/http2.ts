// h2c downstream -> h2c upstream. gRPC needs HTTP/2 end to end (trailers, full-duplex streams), and
// http2-proxy only forwards to an HTTP/1.1 upstream, so this is a small forwarder of its own: one
// upstream HTTP/2 session per downstream connection, each downstream stream mapped to one upstream
// stream, bodies moved both ways (a full writable pauses its source, so HTTP/2 flow control on one
// side holds the other), trailers forwarded both ways, resets carried across.
//
// Reset propagation. Both directions are opened with waitForTrailers, so a stream's end is always
// an explicit step (trailers, or an empty END_STREAM) that is skipped once the exchange has
// failed: Node's stream.close(code) ends the writable side before its RST_STREAM, and without that
// step a truncated body would reach the other side as a complete one.
//
// Like http1.ts, one Http2Server serves all connections (handed over with emit('connection')),
// and per-stream state lives on an exchange object tagged onto both streams, so the listeners are
// shared functions rather than closures made per request. For the same reason bodies move with
// 'data'/'drain' listeners rather than pipe(), which builds a set of closures for every stream.

import http2 from 'node:http2';
import { type L7Connection, type ProtocolHandler, destroyAfterGrace, errorCode } from './connection.ts';
import { normalizePath, type NormalizedPath } from './path.ts';
import { repeatedSingleton, sameAuthority } from './headers.ts';
import { type L7Limits, limitsKey } from './limits.ts';
import { hostOf, isGrpc, joinValues } from './request-info.ts';
import { GRPC_PERMISSION_DENIED, sendDenied2, sendText2 } from './responses.ts';
import type { HttpRequestInfo } from './types.ts';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/**
 * Per-stream receive window. Larger than the protocol's 64 KiB so that one stream is not held to
 * 64 KiB per round trip, small enough that a stalled reader pins little memory.
 */
const STREAM_WINDOW = 1024 * 1024;
/**
 * Receive window of a whole connection, shared by its streams. Not more: Node's session stops
 * reading its socket while a write of its own is stuck, so with 8 MiB bulk streams both ways
 * against peers with large windows stalled for good (agent/route/h2-duplex.test.ts; the routed
 * path and HBONE came to 4 MiB the same way).
 */
const SESSION_WINDOW = 4 * 1024 * 1024;
/** nghttp2's per-session memory cap (MiB); the default 10 is too small for the windows above. */
const MAX_SESSION_MEMORY_MB = 64;
const SETTINGS: http2.Settings = { initialWindowSize: STREAM_WINDOW, enablePush: false, maxConcurrentStreams: 1000 };
/**
 * Names the upstream session only. Every forwarded request carries the client's own :authority
 * (requests without one are refused), so this never reaches the pod.
 */
const UPSTREAM_ORIGIN = 'http://upstream.invalid';

const kExchange = Symbol('weft.l7.exchange');
type TaggedServerStream = http2.ServerHttp2Stream & { [kExchange]?: Http2Exchange };
type TaggedClientStream = http2.ClientHttp2Stream & { [kExchange]?: Http2Exchange };

const OPTIONS_STAR: NormalizedPath = { ok: true, path: '*', query: '' };
const NO_TRAILERS: http2.OutgoingHttpHeaders = {};

class Http2Exchange implements HttpRequestInfo {
  readonly protocol = 'h2';
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly grpc: boolean;
  readonly conn: L7Connection;
  readonly downstream: TaggedServerStream;
  readonly started = performance.now();
  upstream: TaggedClientStream | undefined = undefined;
  /** The status the client got (0 until something was sent). */
  status = 0;
  grpcStatus: number | undefined = undefined;
  denied: string | undefined = undefined;
  requestTrailers: http2.IncomingHttpHeaders | undefined = undefined;
  responseTrailers: http2.IncomingHttpHeaders | undefined = undefined;
  /** The upstream response arrived in full. */
  responseComplete = false;
  /** One side failed: the other gets a reset, never a clean end. */
  failed = false;
  /** The request had no body (END_STREAM on its headers), so it can be sent again. */
  endStream = false;
  retried = false;
  readonly handler: Http2Handler;
  readonly #headers: http2.IncomingHttpHeaders;

  constructor(handler: Http2Handler, conn: L7Connection, downstream: TaggedServerStream, headers: http2.IncomingHttpHeaders, method: string, path: string, host: string) {
    this.handler = handler;
    this.conn = conn;
    this.downstream = downstream;
    this.#headers = headers;
    this.method = method;
    this.path = path;
    this.host = host;
    this.grpc = isGrpc(headers['content-type']);
  }

  /** The request headers, as forwarded. */
  get headers(): http2.IncomingHttpHeaders {
    return this.#headers;
  }

  header(name: string): string | undefined {
    // Pseudo-headers are not headers: ':path' in particular must be read normalized, as `path`.
    return name.charCodeAt(0) === 0x3a /* : */ ? undefined : joinValues(this.#headers[name]);
  }
}

class Http2Handler implements ProtocolHandler {
  readonly #conn: L7Connection;
  #session: http2.ServerHttp2Session | undefined;
  #upstream: http2.ClientHttp2Session | undefined;
  #connecting: Promise<http2.ClientHttp2Session> | undefined;
  #pingOutstanding = false;

  constructor(conn: L7Connection) {
    this.#conn = conn;
  }

  attach(session: http2.ServerHttp2Session): void {
    this.#session = session;
    session.setLocalWindowSize(SESSION_WINDOW);
    session.on('stream', this.#onStream);
    session.on('error', (err) => this.#conn.fail(`client: ${errorCode(err)}`));
    // A client that has sent its FIN sends no more frames, and with the agent's half-open client
    // sockets Node's session would wait for it forever: GOAWAY, so that the session ends once the
    // streams in flight are answered.
    this.#conn.client.once('end', () => session.close());
  }

  checkAlive(): void {
    const session = this.#session;
    if (!session || session.destroyed) return;
    // The previous PING is still unanswered a whole idle period later: the peer is gone.
    if (this.#pingOutstanding) return this.#conn.close('client: no answer to PING');
    this.#pingOutstanding = true;
    // Writing the PING surfaces a reset the paused socket has not read yet (EPIPE/ECONNRESET).
    const sent = session.ping((err) => {
      this.#pingOutstanding = false;
      if (err) this.#conn.close(`client: PING failed (${errorCode(err)})`);
    });
    if (!sent) this.#conn.close('client: PING not sent');
  }

  drain(): void {
    this.#session?.close();
    this.#upstream?.close();
    destroyAfterGrace(this.#conn.client);
  }

  destroy(): void {
    this.#session?.destroy();
    this.#upstream?.destroy();
    if (!this.#conn.client.destroyed) this.#conn.client.destroy();
  }

  readonly #onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void => {
    const conn = this.#conn;
    conn.begin();
    const method = (headers[':method'] ?? '').toUpperCase();
    const rawPath = headers[':path'] ?? '';
    const normalized = method === 'OPTIONS' && rawPath === '*' ? OPTIONS_STAR : normalizePath(rawPath, conn.pathOptions);
    const authority = headers[':authority'] ?? headers.host;
    const ds = stream as TaggedServerStream;
    const ex = new Http2Exchange(this, conn, ds, headers, method, normalized.ok ? normalized.path : withoutQuery(rawPath), hostOf(authority));
    ds[kExchange] = ex;
    ds.on('error', ignore); // reported through 'close' and rstCode
    ds.once('close', onDownstreamClose);

    if (method === 'CONNECT') return respondLocal(ex, 405, 'CONNECT is not supported');
    if (!normalized.ok) return respondLocal(ex, 400, `bad request: ${normalized.reason}`);
    if (authority === undefined) return respondLocal(ex, 400, 'bad request: missing :authority');
    // Node keeps the first of repeated singleton fields; policy must not judge a value the pod
    // never sees, or miss one it does (headers.ts).
    const repeated = repeatedSingleton(rawHeaders);
    if (repeated !== undefined) return respondLocal(ex, 400, `bad request: repeated ${repeated} header`);
    // RFC 9113 8.3.1: a host that names another origin than :authority makes the request malformed.
    const { host } = headers;
    if (host !== undefined && headers[':authority'] !== undefined && !sameAuthority(host, headers[':authority'], headers[':scheme'] ?? 'http')) {
      return respondLocal(ex, 400, 'bad request: :authority and host name different authorities');
    }
    const verdict = conn.authorize(ex);
    if (!verdict.allow) {
      conn.countDenied();
      ex.denied = verdict.reason;
      ex.status = ex.grpc ? 200 : 403;
      if (ex.grpc) ex.grpcStatus = GRPC_PERMISSION_DENIED;
      return sendDenied2(ds, verdict.reason, ex.grpc);
    }

    // Forwarded as received apart from the path, which goes up normalized, as policy saw it.
    headers[':path'] = normalized.query === '' ? normalized.path : normalized.path + normalized.query;
    if (verdict.headers) Object.assign(headers, verdict.headers);
    ex.endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    this.forward(ex);
  };

  forward(ex: Http2Exchange): void {
    const upstream = this.#upstream;
    if (upstream && !upstream.closed && !upstream.destroyed) return startUpstream(ex, upstream);
    this.#connect().then(
      (session) => startUpstream(ex, session),
      () => respondLocal(ex, 503, 'upstream unavailable'),
    );
  }

  /** The upstream session, dialled on first use and again after the pod closed it. */
  #connect(): Promise<http2.ClientHttp2Session> {
    this.#connecting ??= this.#conn.dialUpstream().then(
      (socket) => {
        this.#connecting = undefined;
        const session = http2.connect(UPSTREAM_ORIGIN, {
          createConnection: () => socket,
          settings: SETTINGS,
          maxSessionMemory: MAX_SESSION_MEMORY_MB,
        });
        session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
        session.on('error', (err) => this.#conn.fail(`upstream: ${errorCode(err)}`));
        const forget = (): void => {
          if (this.#upstream === session) this.#upstream = undefined;
        };
        session.once('goaway', forget);
        session.once('close', forget);
        this.#upstream = session;
        return session;
      },
      (err: unknown) => {
        this.#connecting = undefined;
        throw err;
      },
    );
    return this.#connecting;
  }
}

function startUpstream(ex: Http2Exchange, session: http2.ClientHttp2Session): void {
  const ds = ex.downstream;
  if (ds.closed || ds.destroyed) return; // the client gave up while the upstream was dialled
  const endStream = ex.endStream;
  let us: TaggedClientStream;
  try {
    us = session.request(ex.headers, { endStream, waitForTrailers: !endStream });
  } catch {
    // Node refused to send the headers (e.g. a field it considers invalid for a request).
    return respondLocal(ex, 502, 'upstream refused the request');
  }
  ex.upstream = us;
  us[kExchange] = ex;
  us.on('error', ignore); // reported through 'close' and rstCode
  us.on('response', onUpstreamResponse);
  us.on('headers', onUpstreamInformational);
  us.on('trailers', onUpstreamTrailers);
  us.once('close', onUpstreamClose);
  if (endStream) return;
  us.on('wantTrailers', onUpstreamWantTrailers);
  ds.on('trailers', onDownstreamTrailers);
  ds.on('data', onDownstreamData);
  us.on('drain', onUpstreamDrain);
  // A body that ended while the upstream was dialled (an empty DATA frame with END_STREAM, as curl
  // sends for an empty upload) has emitted 'end' already: end the upstream request now.
  if (ds.readableEnded) onDownstreamEnd.call(ds);
  else ds.once('end', onDownstreamEnd);
}

function respondLocal(ex: Http2Exchange, status: number, text: string): void {
  ex.status = status;
  sendText2(ex.downstream, status, text);
}

// Request direction ------------------------------------------------------------------------------

function onDownstreamTrailers(this: TaggedServerStream, trailers: http2.IncomingHttpHeaders): void {
  const ex = this[kExchange];
  if (ex) ex.requestTrailers = trailers;
}

function onDownstreamData(this: TaggedServerStream, chunk: Buffer): void {
  const us = this[kExchange]?.upstream;
  if (us && !us.write(chunk)) this.pause();
}

function onUpstreamDrain(this: TaggedClientStream): void {
  this[kExchange]?.downstream.resume();
}

function onDownstreamEnd(this: TaggedServerStream): void {
  const ex = this[kExchange];
  // A stream that is already closed ended because it was reset or its connection went away: that
  // must not reach the pod as a complete request.
  if (!ex || ex.failed || this.closed) return;
  ex.upstream?.end();
}

function onUpstreamWantTrailers(this: TaggedClientStream): void {
  const ex = this[kExchange];
  if (!ex || ex.failed || this.closed || this.destroyed) return;
  sendTrailersOrReset(this, ex, ex.requestTrailers);
}

// Response direction -----------------------------------------------------------------------------

function onUpstreamResponse(this: TaggedClientStream, headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, flags: number): void {
  const ex = this[kExchange];
  if (!ex) return;
  const ds = ex.downstream;
  const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
  ex.status = headers[':status'] ?? 0;
  if (endStream) {
    // Trailers-only (e.g. a gRPC error status): the status is in the headers.
    ex.responseComplete = true;
    if (ex.grpc) ex.grpcStatus = grpcStatusOf(headers['grpc-status']);
  }
  if (ds.closed || ds.destroyed) return;
  try {
    ds.respond(headers, { endStream, waitForTrailers: !endStream });
  } catch {
    ex.failed = true;
    ex.status = 502;
    ds.close(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (endStream) return;
  ds.on('wantTrailers', onDownstreamWantTrailers);
  ds.on('drain', onDownstreamDrain);
  this.once('end', onUpstreamEnd);
  this.on('data', onUpstreamData);
}

function onUpstreamData(this: TaggedClientStream, chunk: Buffer): void {
  const ds = this[kExchange]?.downstream;
  if (ds && !ds.destroyed && !ds.write(chunk)) this.pause();
}

function onDownstreamDrain(this: TaggedServerStream): void {
  this[kExchange]?.upstream?.resume();
}

/** 1xx (100 Continue, 103 Early Hints) passes through. */
function onUpstreamInformational(this: TaggedClientStream, headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void {
  const ds = this[kExchange]?.downstream;
  const status = headers[':status'] ?? 0;
  if (ds && status >= 100 && status < 200 && !ds.headersSent && !ds.closed) ds.additionalHeaders(headers);
}

function onUpstreamTrailers(this: TaggedClientStream, trailers: http2.IncomingHttpHeaders): void {
  const ex = this[kExchange];
  if (!ex) return;
  ex.responseTrailers = trailers;
  if (ex.grpc) ex.grpcStatus = grpcStatusOf(trailers['grpc-status']);
}

function onUpstreamEnd(this: TaggedClientStream): void {
  const ex = this[kExchange];
  // 'end' after a reset (closed with an error code) is not the end of the response.
  if (!ex || (this.closed && this.rstCode !== NGHTTP2_NO_ERROR)) return;
  ex.responseComplete = true;
  if (!ex.downstream.closed && !ex.downstream.destroyed) ex.downstream.end();
}

function onDownstreamWantTrailers(this: TaggedServerStream): void {
  const ex = this[kExchange];
  if (!ex || ex.failed || this.closed || this.destroyed) return;
  sendTrailersOrReset(this, ex, ex.responseTrailers);
}

/**
 * sendTrailers() throws on fields Node will not send (it runs inside the 'wantTrailers' emit, so
 * a throw would be uncaught): the exchange fails and the stream is reset, never ended cleanly.
 */
function sendTrailersOrReset(stream: http2.Http2Stream, ex: Http2Exchange, trailers: http2.IncomingHttpHeaders | undefined): void {
  try {
    stream.sendTrailers(trailers ?? NO_TRAILERS);
  } catch {
    ex.failed = true;
    stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}

// Ends and failures ------------------------------------------------------------------------------

function onUpstreamClose(this: TaggedClientStream): void {
  const ex = this[kExchange];
  if (!ex) return;
  const ds = ex.downstream;
  if (ex.responseComplete && this.rstCode === NGHTTP2_NO_ERROR) {
    // Done. If the pod answered before the request body was in, the rest of it is read and dropped,
    // so that the client can finish its stream.
    if (!ds.readableEnded && !ds.destroyed) {
      ds.off('data', onDownstreamData);
      ds.resume();
    }
    return;
  }
  if (ds.closed || ds.destroyed) {
    ex.failed = true;
    return;
  }
  if (this.rstCode === NGHTTP2_REFUSED_STREAM && ex.endStream && !ex.retried && !ds.headersSent) {
    // The pod did not process it (RFC 9113 8.7), typically a stream racing the pod's GOAWAY, and
    // there is no body to replay: send it again, on a new session if this one is going away.
    ex.retried = true;
    ex.upstream = undefined;
    ex.handler.forward(ex);
    return;
  }
  ex.failed = true;
  if (!ds.headersSent) {
    // Nothing sent yet: the client gets an answer. REFUSED_STREAM means the pod did not process it.
    if (this.rstCode === NGHTTP2_REFUSED_STREAM) respondLocal(ex, 503, 'upstream refused the stream');
    else respondLocal(ex, 502, 'upstream reset');
    return;
  }
  // Mid-response: only a reset can say the response is incomplete.
  ex.status = 502;
  ds.close(this.rstCode === NGHTTP2_NO_ERROR || this.rstCode === undefined ? NGHTTP2_INTERNAL_ERROR : this.rstCode);
}

function onDownstreamClose(this: TaggedServerStream): void {
  const ex = this[kExchange];
  if (!ex) return;
  this[kExchange] = undefined;
  const us = ex.upstream;
  if (us && !us.closed && !us.destroyed) {
    const complete = this.rstCode === NGHTTP2_NO_ERROR && ex.responseComplete && !ex.failed;
    if (!complete) ex.failed = true;
    // The client is gone, or done: the upstream stream goes too, with the client's reset code.
    us.close(complete ? NGHTTP2_NO_ERROR : this.rstCode || NGHTTP2_CANCEL);
  }
  ex.conn.finish(ex, ex.status, ex.started, ex.grpcStatus, ex.denied);
}

// The shared server --------------------------------------------------------------------------------

/** One server per distinct set of limits (in the agent: one). */
const servers = new Map<string, http2.Http2Server>();
/** The handler of the connection being handed over; the server's 'session' event fires synchronously. */
let handover: Http2Handler | undefined;

function sharedServer(limits: Readonly<L7Limits>): http2.Http2Server {
  const key = limitsKey(limits);
  let server = servers.get(key);
  if (server) return server;
  server = http2.createServer({
    // Streams beyond the announced maximum are refused by nghttp2 (RST_STREAM REFUSED_STREAM).
    settings: { ...SETTINGS, maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
  });
  server.on('session', (session: http2.ServerHttp2Session) => {
    if (handover) handover.attach(session);
    else session.destroy();
  });
  servers.set(key, server);
  return server;
}

/** Serves h2c on the connection; the client stream must be paused with the sniffed preface unshifted. */
export function serveHttp2(conn: L7Connection): void {
  const handler = new Http2Handler(conn);
  conn.setHandler(handler);
  handover = handler;
  try {
    sharedServer(conn.limits).emit('connection', conn.client);
  } finally {
    handover = undefined;
  }
}

function grpcStatusOf(value: string | string[] | undefined): number | undefined {
  const n = Number(joinValues(value));
  return value === undefined || Number.isNaN(n) ? undefined : n;
}

function withoutQuery(path: string): string {
  const end = path.search(/[?#]/);
  return end === -1 ? path : path.slice(0, end);
}

function ignore(): void {}
