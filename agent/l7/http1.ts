// HTTP/1.1 downstream -> HTTP/1.1 upstream. Node's HTTP/1 parser (llhttp, strict mode: conflicting
// Content-Length / Transfer-Encoding and other smuggling shapes are refused) reads the client's
// requests; each is normalized, authorized, and forwarded with http2-proxy over the connection's
// one upstream socket, kept alive between requests.
//
// One http.Server serves every connection: it never listens, connections are handed to it with
// emit('connection', duplex), which works for a socket and for a tunnel stream alike, and requests
// find their connection's handler through the client duplex. Per request this file allocates the
// exchange record and nothing else of its own; listeners are shared functions that find their
// state on the object they are called on.
//
// Two things http2-proxy does that a transparent mesh must not, undone in onReq: it drops Host
// (Node would then invent one from the upstream address) and appends a Forwarded element carrying
// the agent's and the client's addresses. And one it cannot do: it discards the body of a GET, HEAD
// or OPTIONS request but forwards its Content-Length, which would leave the backend waiting for a
// body that never comes. Such requests are refused with 400.

import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import proxy, { type http1WebOptions, type wsHttp1Options } from 'http2-proxy';
import { type L7Connection, L7Error, type ProtocolHandler, closeGracefully } from './connection.ts';
import { repeatedSingleton, sameAuthority } from './headers.ts';
import { type L7Limits, limitsKey } from './limits.ts';
import { type RequestTarget, hostOf, isGrpc, joinValues, parseRequestTarget } from './request-info.ts';
import { GRPC_PERMISSION_DENIED, deniedText, sendDenied1, sendRawAndClose, sendText1 } from './responses.ts';
import type { HttpRequestInfo } from './types.ts';

const kExchange = Symbol('weft.l7.exchange');

type TaggedResponse = http.ServerResponse & { [kExchange]?: Http1Exchange };
type TaggedRequest = http.IncomingMessage & { [kExchange]?: Http1Exchange };
type ProxyError = Error & { statusCode?: number };

/** Methods for which http2-proxy sends no request body. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** One request: what policy sees, and what the access log needs when it completes. */
class Http1Exchange implements HttpRequestInfo {
  readonly protocol = 'http/1.1';
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly grpc: boolean;
  readonly target: RequestTarget;
  readonly conn: L7Connection;
  readonly handler: Http1Handler;
  readonly started = performance.now();
  /** The status of a failure the proxy answered itself (502, 503), which res.statusCode may not show. */
  failedStatus = 0;
  denied: string | undefined = undefined;
  /** Handed to the upstream (its end lets the next pipelined request go). */
  forwarded = false;
  /** Set when this side answered a gRPC call itself (a denial). */
  grpcStatus: number | undefined = undefined;
  /** Why the request is refused with 400 before policy sees it, if it is. */
  readonly refused: string | undefined;
  readonly #req: http.IncomingMessage;

  constructor(handler: Http1Handler, conn: L7Connection, req: http.IncomingMessage, method: string, target: RequestTarget, host: string, refused: string | undefined) {
    this.refused = refused;
    this.handler = handler;
    this.conn = conn;
    this.#req = req;
    this.method = method;
    this.target = target;
    this.path = target.path;
    this.host = host;
    this.grpc = isGrpc(req.headers['content-type']);
  }

  header(name: string): string | undefined {
    // req.headers is what http2-proxy forwards. Repeats of the fields Node would keep one value of
    // are refused before policy runs (headers.ts), so no value here hides another.
    return joinValues(this.#req.headers[name]);
  }
}

class Http1Handler implements ProtocolHandler {
  readonly #conn: L7Connection;
  readonly #agent: UpstreamAgent;
  readonly #web: http1WebOptions;
  readonly #ws: wsHttp1Options;
  #forwarding = false;
  /** Reading was paused because the pipeline queue is full (Node pauses for its own reasons too). */
  #pausedForQueue = false;
  /** Pipelined requests waiting for the upstream, as (req, res) pairs. */
  readonly #queue: (http.IncomingMessage | http.ServerResponse)[] = [];

  constructor(conn: L7Connection) {
    this.#conn = conn;
    this.#agent = new UpstreamAgent(conn);
    // hostname and port only name the agent's pool: the agent dials, and Host is the client's.
    this.#web = { hostname: 'upstream', port: 80, onReq: this.#onUpstreamRequest };
    this.#ws = { hostname: 'upstream', port: 80, onReq: this.#onUpstreamRequest };
  }

  request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = this.#begin(req);
    (res as TaggedResponse)[kExchange] = ex;
    res.once('close', onResponseClose);
    // A response can emit 'error' after http2-proxy has stopped listening (a write racing the end).
    res.on('error', ignoreError);
    const target = ex.target;
    if (!target.ok) return sendText1(res, 400, `bad request: ${target.reason}`);
    if (ex.refused) return sendText1(res, 400, `bad request: ${ex.refused}`);
    if (BODYLESS_METHODS.has(ex.method) && hasBody(req.headers)) {
      return sendText1(res, 400, `bad request: a ${ex.method} request with a body is not supported`);
    }
    const verdict = this.#conn.authorize(ex);
    if (!verdict.allow) {
      ex.denied = verdict.reason;
      if (ex.grpc) ex.grpcStatus = GRPC_PERMISSION_DENIED;
      this.#conn.countDenied();
      return sendDenied1(res, verdict.reason, ex.grpc);
    }
    req.url = target.forward;
    // http2-proxy forwards req.headers: what is set here is what the pod reads.
    if (verdict.headers) Object.assign(req.headers, verdict.headers);
    if (!this.#forwarding) return this.#forward(req, res);
    const queued = this.#queue.length / 2;
    const max = this.#conn.limits.maxPipelinedRequests;
    // The parser emits every request of a chunk at once, so pausing alone is a soft bound; what
    // arrives beyond it is answered (in order, Node holds the answer back) instead of queued.
    if (queued >= max) return sendText1(res, 503, 'too many pipelined requests');
    this.#queue.push(req, res);
    if (queued + 1 >= max) {
      this.#pausedForQueue = true;
      this.#conn.client.pause();
    }
  }

  /**
   * One request at a time goes upstream. Responses leave a connection in order anyway, and Node's
   * Agent does not count a connection that is still being dialled, so a pipelined request arriving
   * during the first dial would otherwise open a second upstream connection.
   */
  #forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.#forwarding = true;
    const ex = (res as TaggedResponse)[kExchange];
    if (ex) ex.forwarded = true;
    void proxy.web(req, res, this.#web, onProxyDone);
  }

  /** The forwarded request's response is over: the next pipelined one, if any, may go. */
  forwardDone(): void {
    this.#forwarding = false;
    if (this.#queue.length === 0) return;
    const req = this.#queue.shift() as http.IncomingMessage;
    const res = this.#queue.shift() as http.ServerResponse;
    if (this.#pausedForQueue) {
      this.#pausedForQueue = false;
      if (!this.#conn.client.destroyed) this.#conn.client.resume();
    }
    if (res.destroyed) this.forwardDone();
    else this.#forward(req, res);
  }

  /** A WebSocket upgrade: authorized like any request, then a byte tunnel (http2-proxy's ws). */
  upgrade(req: http.IncomingMessage, client: Duplex, head: Buffer): void {
    const ex = this.#begin(req);
    const target = ex.target;
    if (!target.ok || ex.refused !== undefined) {
      this.#conn.finish(ex, 400, ex.started, undefined, undefined);
      return sendRawAndClose(client, 400, 'Bad Request', `bad request: ${target.ok ? ex.refused : target.reason}`);
    }
    const verdict = this.#conn.authorize(ex);
    if (!verdict.allow) {
      // The connection was handed over for the upgrade and is no longer parsed as HTTP: it closes.
      this.#conn.countDenied();
      this.#conn.finish(ex, 403, ex.started, undefined, verdict.reason);
      return sendRawAndClose(client, 403, 'Forbidden', deniedText(verdict.reason));
    }
    req.url = target.forward;
    if (verdict.headers) Object.assign(req.headers, verdict.headers);
    req.headers.upgrade = 'websocket'; // http2-proxy compares case-sensitively
    (req as TaggedRequest)[kExchange] = ex;
    void proxy.ws(req, asSocket(client), head, this.#ws, onUpgradeDone);
  }

  /** CONNECT on an HTTP port of a pod is not something to proxy. */
  connect(req: http.IncomingMessage, client: Duplex): void {
    const ex = this.#begin(req);
    this.#conn.finish(ex, 405, ex.started, undefined, undefined);
    sendRawAndClose(client, 405, 'Method Not Allowed', 'CONNECT is not supported');
  }

  /** The parser refused the bytes (or the client reset): 400 if nothing else is being answered, then close. */
  clientError(err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'ERR_UNKNOWN';
    const client = this.#conn.client;
    if (code === 'ECONNRESET' || this.#conn.inflight > 0) {
      // A response in progress cannot be followed by an error response; the connection just ends.
      this.#conn.fail(code === 'ECONNRESET' ? `client: ${code}` : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request header timeout' : `malformed request: ${code}`);
      client.destroy();
      return;
    }
    if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      this.#conn.fail('request header timeout');
      return sendRawAndClose(client, 408, 'Request Timeout', 'request header timeout');
    }
    this.#conn.fail(`malformed request: ${code}`);
    if (code === 'HPE_HEADER_OVERFLOW') sendRawAndClose(client, 431, 'Request Header Fields Too Large', 'request header fields too large');
    else sendRawAndClose(client, 400, 'Bad Request', 'bad request');
  }

  drain(): void {
    closeGracefully(this.#conn.client);
    this.#agent.destroy();
  }

  destroy(): void {
    this.#agent.destroy();
    if (!this.#conn.client.destroyed) this.#conn.client.destroy();
  }

  #begin(req: http.IncomingMessage): Http1Exchange {
    this.#conn.begin();
    const method = req.method ?? '';
    const target = parseRequestTarget(method, req.url ?? '', this.#conn.pathOptions);
    const repeated = repeatedSingleton(req.rawHeaders);
    const host = req.headers.host;
    let authority = host;
    let refused: string | undefined;
    if (repeated !== undefined) refused = `repeated ${repeated} header`;
    else if (target.ok && target.authority !== undefined) {
      // The authority of an absolute-form target wins over Host (RFC 9112 3.2.2); it goes upstream
      // as Host, with the target in origin-form, so the pod reads the one authority policy saw.
      // A Host that names another origin is refused: a backend or cache keyed on Host would
      // otherwise serve one origin under policy for the other.
      if (host !== undefined && !sameAuthority(host, target.authority, target.scheme)) refused = 'the request target and Host name different authorities';
      authority = target.authority;
      req.headers.host = target.authority;
    }
    return new Http1Exchange(this, this.#conn, req, method, target, hostOf(authority), refused);
  }

  /**
   * http2-proxy awaits this, then aborts the upstream request without listening for its errors if
   * the client request was aborted in the meantime. A tunnel stream destroyed by a parse error
   * (a broken chunk) closes within that await, so that abort was routine: the agent's dial then
   * failed with SESSION_CLOSED into a ClientRequest with no 'error' listener, which took the
   * process down. So no upstream request is made for a client that is gone, and every one made
   * has a listener from birth (http2-proxy's own reports the errors it cares about).
   */
  readonly #onUpstreamRequest = (req: http.IncomingMessage, options: http.RequestOptions): Promise<http.ClientRequest> => {
    if (req.destroyed || this.#conn.ended) return Promise.reject(new L7Error('SESSION_CLOSED', 'the client went away before the request was forwarded'));
    options.agent = this.#agent;
    options.setHost = false;
    const headers = options.headers as http.OutgoingHttpHeaders;
    const { host, forwarded } = req.headers;
    if (host !== undefined) headers.host = host;
    if (forwarded === undefined) delete headers.forwarded;
    else headers.forwarded = forwarded;
    const upstream = http.request(options);
    upstream.on('error', ignoreError);
    return Promise.resolve(upstream);
  };
}

/**
 * The connection's one upstream: at most one socket, dialled when the first request needs it,
 * kept alive between requests and dialled again if the pod closed it.
 */
class UpstreamAgent extends http.Agent {
  readonly #conn: L7Connection;

  constructor(conn: L7Connection) {
    super({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
    this.#conn = conn;
  }

  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    this.#conn.dialUpstream().then(
      (socket) => callback?.(null, socket),
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

// The shared server and its listeners ------------------------------------------------------------

const handlers = new WeakMap<Duplex, Http1Handler>();
/** One server per distinct set of limits (in the agent: one). */
const servers = new Map<string, http.Server>();

function sharedServer(limits: Readonly<L7Limits>): http.Server {
  const key = limitsKey(limits);
  let server = servers.get(key);
  if (server) return server;
  server = http.createServer({
    // Only WebSocket upgrades leave HTTP; any other Upgrade (h2c, say) is served as a plain
    // request, with the Upgrade header dropped as hop-by-hop.
    shouldUpgradeCallback: isWebSocketUpgrade,
    maxHeaderSize: limits.maxHeaderBytes,
    // Node times a head from its first byte (llhttp's message begin) to its end, pipelined heads
    // included, and leaves keep-alive idleness alone: the slow-header defence wanted here.
    // requestTimeout would cut long uploads and streams, so it stays off.
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  });
  // Node starts checking its connections' timers when the server starts listening. This one
  // never listens (connections are handed to it), so it is told that it did.
  if (limits.headersTimeoutMs > 0) server.emit('listening');
  servers.set(key, server);
  // Idle connections are the session's business (its idle timeout), not Node's 5 s default.
  server.keepAliveTimeout = 0;
  // A client that sends its request and then half-closes (FIN) still gets its response, as it would
  // from the pod itself; by default Node's server drops the requests in flight on the client's FIN.
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const handler = handlers.get(req.socket);
    if (handler) handler.request(req, res);
    else req.socket.destroy();
  });
  server.on('upgrade', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    const handler = handlers.get(client);
    if (handler) handler.upgrade(req, client, head);
    else client.destroy();
  });
  server.on('connect', (req: http.IncomingMessage, client: Duplex) => {
    const handler = handlers.get(client);
    if (handler) handler.connect(req, client);
    else client.destroy();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, client: Duplex) => {
    const handler = handlers.get(client);
    if (handler) handler.clientError(err);
    else client.destroy();
  });
  return server;
}

/** Serves HTTP/1.x on the connection; the client stream must be paused with any sniffed bytes unshifted. */
export function serveHttp1(conn: L7Connection): void {
  const handler = new Http1Handler(conn);
  conn.setHandler(handler);
  handlers.set(conn.client, handler);
  sharedServer(conn.limits).emit('connection', conn.client);
  conn.client.resume();
}

function onResponseClose(this: TaggedResponse): void {
  const ex = this[kExchange];
  if (!ex) return;
  this[kExchange] = undefined;
  const grpcStatus = ex.grpcStatus ?? (ex.grpc ? grpcStatusOf(this.getHeader('grpc-status')) : undefined);
  // 0: the client went away before anything was answered.
  const status = ex.failedStatus || (this.headersSent ? this.statusCode : 0);
  ex.conn.finish(ex, status, ex.started, grpcStatus, ex.denied);
  if (ex.forwarded) ex.handler.forwardDone();
}

function onProxyDone(err: ProxyError | null, _req: http.IncomingMessage, res: http.ServerResponse): void {
  if (!err) return;
  const status = err.statusCode ?? 502;
  const ex = (res as TaggedResponse)[kExchange];
  if (ex) ex.failedStatus = status;
  // Once the response has started, a failure can only be shown by cutting the connection: a
  // truncated body must not look complete.
  if (res.headersSent) res.destroy();
  else sendText1(res, status, upstreamFailureText(status));
}

function onUpgradeDone(err: ProxyError | null, req: http.IncomingMessage, client: net.Socket): void {
  const ex = (req as TaggedRequest)[kExchange];
  (req as TaggedRequest)[kExchange] = undefined;
  const status = err ? (err.statusCode ?? 502) : 101;
  if (ex) ex.conn.finish(ex, status, ex.started, undefined, undefined);
  if (!err) return;
  // 503: nothing reached the pod and nothing was written yet; otherwise the tunnel just ends.
  if (status === 503) sendRawAndClose(client, 503, 'Service Unavailable', upstreamFailureText(503));
  else client.destroy();
}

function upstreamFailureText(status: number): string {
  if (status === 503) return 'upstream unavailable';
  if (status === 504) return 'upstream timeout';
  return 'upstream reset';
}

function hasBody(headers: http.IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  return req.method === 'GET' && req.headers.upgrade?.toLowerCase() === 'websocket';
}

function grpcStatusOf(value: number | string | string[] | undefined): number | undefined {
  const n = Number(value);
  return value === undefined || Number.isNaN(n) ? undefined : n;
}

/**
 * http2-proxy's ws() tunes the client socket (no Nagle, TCP keepalive, no timeout). A tunnel stream
 * has no such knobs, and the tunnel underneath already has them; no-ops stand in.
 */
function asSocket(client: Duplex): net.Socket {
  const socket = client as Partial<net.Socket> & Duplex;
  socket.setNoDelay ??= noopSocketOption;
  socket.setKeepAlive ??= noopSocketOption;
  socket.setTimeout ??= noopSocketOption;
  return socket as net.Socket;
}

function ignoreError(): void {}

function noopSocketOption(this: net.Socket): net.Socket {
  return this;
}
