// The routed outbound path for HTTP/2 with prior knowledge (h2c), which is what gRPC speaks: each
// stream is matched on its own (HTTPRoutes, and GRPCRoutes for gRPC requests), filtered, given a
// backend by weight and an endpoint by power of two choices, and carried on an HTTP/2 session to
// that endpoint. Upstream sessions are kept open and shared by the streams of every connection
// of the same client identity (a session was opened with that pod's certificate, or admitted as
// that pod, so only its requests may use it): a gRPC channel is one long connection, and
// balancing its calls per stream over a pool of sessions is what spreads it over the endpoints.
//
// A stream's end is always an explicit step on both sides (trailers, or an empty END_STREAM), and
// a failure on one side resets the other, so a truncated body never arrives as a complete one.
//
// Timeouts and retries are the HTTP/1.1 path's (proxy.ts; the decision and the budget are
// retry.ts's): timeouts.backendRequest bounds each attempt until its response's headers (the
// attempt is then cancelled, and retried or answered 504, DEADLINE_EXCEEDED to gRPC); a rule's
// retry tries a failed connect, a timed-out attempt or a status in its codes again, on an endpoint
// not tried yet if there is one, after its backoff, within the budget. Only while nothing of the
// response went to the client, and only while the request's body so far fits in MAX_RETRY_BODY:
// the body streams to the attempt as it comes (h2-replay.ts) and is kept for the next one up to
// that bound; past it the stream goes on, once, where it is (not counted: nor is a large body on
// HTTP/1.1, which is not retried either). The HTTP status decides (the Gateway API's HTTPRoute
// retry reads HTTP codes), and a gRPC status only where the route names it (the
// retry.weft.dev/grpc-codes annotation, rule.retry.grpcCodes) and the call failed before any
// answer: a trailers-only response, its status in the only HEADERS frame. A gRPC error in trailers
// after messages came is not retried: part of the answer is the client's already. A failed
// connect is also tried on other endpoints within the attempt (CONNECT_TRIES, with or without a
// rule retry): nothing was sent, so that is safe.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { RouteBackend, RouteFilter, RouteMirror } from '../../api/route.ts';
import { DEFAULT_L7_LIMITS } from '../l7/limits.ts';
import { grpcMessage } from '../l7/responses.ts';
import { isGrpc, joinValues } from '../l7/request-info.ts';
import type { Address } from '../native/sockopt.ts';
import { peerOf } from '../proxy/relay.ts';
import { modifyHeaders, UpstreamRequest, type HeaderMap, type ResponseModifier } from './filters.ts';
import { routedSpanAttributes } from './span.ts';
import { findEntry, splitTarget } from './match.ts';
import { ReplayBody, sendTrailers } from './h2-replay.ts';
import { routeEjections, routeRequestDuration, routeRequests, routeTimeouts } from './metrics.ts';
import type { MirrorLabels, Mirrors } from './mirror.ts';
import { type AttemptResult, backoffAfter, MAX_RETRY_BODY, type RetryBudgets, retryAfter, type RetryLabels } from './retry.ts';
import { backendEndpoints, type Ejections, type Outstanding, pickP2C, pickWeighted, type Random } from './select.ts';
import type { RouteTable } from './table.ts';
import { openUpstream, type UpstreamDeps } from './upstream.ts';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

const SETTINGS: http2.Settings = { enablePush: false, initialWindowSize: 1024 * 1024, maxConcurrentStreams: 1000 };
/**
 * Toward clients, also the request header list a client may send (uncompressed, RFC 9113
 * SETTINGS_MAX_HEADER_LIST_SIZE): the L7 path's 16 KiB, which HTTP/1.1 on the routed path has too
 * (Node's maxHeaderSize), instead of Node's 64 KiB per stream times 1000 streams.
 */
const CLIENT_SETTINGS: http2.Settings = { ...SETTINGS, maxHeaderListSize: DEFAULT_L7_LIMITS.maxHeaderBytes };
/**
 * Receive window of a whole session (the streams' own are 1 MiB). Not more: Node's HTTP/2 session
 * stops reading its socket while a write of its own is in progress, so when the agent and a peer
 * (a client, or a backend; with windows sized for bulk traffic, as gRPC's are) both have more in
 * flight to each other than the kernel buffers between them hold, each waits for the other to read,
 * for good. What a peer can have in flight to the agent is this window: with 8 MiB, 24 streams of
 * 6 MB echoed both ways at once stalled on every run against peers with 16 MiB/64 MiB windows; with
 * 4 MiB none did (h2-duplex.test.ts). HBONE came to the same bound (agent/hbone/settings.ts).
 */
const SESSION_WINDOW = 4 * 1024 * 1024;
/** Idle upstream sessions are closed after this long, as the HTTP/1.1 pool's connections are. */
const IDLE_MS = 30_000;
/** Endpoints tried for one stream when connecting fails (nothing was sent yet, so this is safe). */
const CONNECT_TRIES = 3;
/** Never sent to a backend: each request carries the client's own :authority. */
const UPSTREAM_ORIGIN = 'http://upstream.invalid';
/** Fields HTTP/2 forbids (RFC 9113 8.2.2); Node refuses to send them. */
const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'];

/** gRPC's codes for the answers written here (grpc.io status codes). */
const GRPC_CODE: Record<number, number> = { 403: 7, 404: 12, 500: 13, 502: 14, 503: 14, 504: 4 };

export interface RoutedStreamConnection {
  source: Workload;
  service: Service;
  port: number;
  peer: string;
}

export interface H2RouterDeps {
  upstream: UpstreamDeps;
  table: RouteTable;
  random: Random;
  outstanding: Outstanding;
  ejections: Ejections;
  mirrors: Mirrors;
  /** The agent's, shared with the HTTP/1.1 path: a rule's budget is the same whatever its clients speak. */
  budgets: RetryBudgets;
}

/** One routed stream on its way through its attempts. */
interface Call {
  c: RoutedStreamConnection;
  ds: http2.ServerHttp2Stream;
  backend: RouteBackend;
  headers: HeaderMap;
  body: ReplayBody;
  backendMs: number | undefined;
  labels: RetryLabels;
  /** Endpoints this call was sent to: a retry prefers another. */
  tried: Set<string>;
  /** The current attempt's stream to the backend. */
  current?: http2.ClientHttp2Stream | undefined;
  /** A 1xx went to the client: no other attempt may answer. */
  forwarded: boolean;
  /** Trailers of either direction could not be passed on. */
  failed: boolean;
  /** The response passed on ended cleanly. */
  complete: boolean;
}

/** A response whose headers arrived; its trailers, if they came already. */
interface UpstreamResponse {
  us: http2.ClientHttp2Stream;
  head: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  flags: number;
  trailers?: http2.IncomingHttpHeaders;
}

/** How an attempt ended: a response, or a failure and the status the agent would answer with. */
interface Outcome extends AttemptResult {
  reason: string;
  response?: UpstreamResponse;
}

interface Opened {
  session?: http2.ClientHttp2Session;
  done: () => void;
  addr: string;
  /** Without a session: connect, refused, no ready endpoint, backend not found. */
  failure?: string;
  reason: string;
}

export class H2Router {
  readonly #d: H2RouterDeps;
  readonly #server: http2.Http2Server;
  readonly #connections = new WeakMap<http2.ServerHttp2Session, RoutedStreamConnection>();
  readonly #sessions = new Map<string, Promise<http2.ClientHttp2Session | undefined>>();
  #handover: { c: RoutedStreamConnection; down: Socket } | undefined;

  constructor(d: H2RouterDeps) {
    this.#d = d;
    this.#server = http2.createServer({ settings: CLIENT_SETTINGS, maxSessionMemory: 64 });
    this.#server.on('session', (session: http2.ServerHttp2Session) => {
      const h = this.#handover;
      if (!h) return void session.destroy();
      this.#connections.set(session, h.c);
      session.on('error', ignore);
      session.setLocalWindowSize(SESSION_WINDOW);
      // A client that sent its FIN sends no more frames: GOAWAY, so the session ends once its streams are answered.
      h.down.once('end', () => session.close());
      session.setTimeout(d.upstream.p.idleTimeoutMs, () => session.close());
    });
    this.#server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => {
      const c = this.#connections.get(stream.session as http2.ServerHttp2Session);
      stream.on('error', ignore);
      if (!c) return void stream.close(NGHTTP2_INTERNAL_ERROR);
      this.#stream(c, stream, headers, (flags & NGHTTP2_FLAG_END_STREAM) !== 0);
    });
  }

  /** Serves h2c on a client connection whose preface is unread (paused, the first bytes unshifted). */
  serve(down: Socket, source: Workload, service: Service, port: number): void {
    this.#handover = { c: { source, service, port, peer: peerOf(down) }, down };
    try {
      this.#server.emit('connection', down);
    } finally {
      this.#handover = undefined;
    }
    // Not resumed: the session reads what is buffered on the paused socket first (resuming would
    // let the socket's handle deliver later bytes ahead of the unshifted preface).
  }

  #stream(c: RoutedStreamConnection, ds: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, endStream: boolean): void {
    const started = performance.now();
    const method = headers[':method'] ?? 'GET';
    const { path, query } = splitTarget(headers[':path'] ?? '/');
    const grpc = isGrpc(headers['content-type']);
    const entries = this.#d.table.entries(c.source.namespace, c.service.key, c.port, grpc);
    const entry = entries.length === 0 ? undefined : findEntry(entries, { method, path, query, headers });
    const routeName = entry ? entry.route.key : 'none';
    const ruleName = entry ? entry.rule.name : '';
    const labels = { source_workload: c.source.name, source_workload_namespace: c.source.namespace, destination_service: c.service.key, route: routeName, rule: ruleName };
    let backendLabel = '';
    let status = 0;
    let grpcStatus: number | undefined;
    let retries = 0;
    // The client span (tracing on), as on HTTP/1.1 (proxy.ts): the destination's server span becomes its child.
    const tracing = this.#d.upstream.p.tracing;
    const span = tracing?.startClientSpan(
      { method, path, host: String(headers[':authority'] ?? headers.host ?? ''), protocol: 'h2', grpc, header: (name) => joinValues(headers[name]) },
      {
        attributes: routedSpanAttributes(c.source, c.service, routeName, ruleName),
        port: c.port,
        samplingRatio: tracing.ratioFor(c.source),
      },
    );
    ds.once('close', () => {
      routeRequests.inc({ ...labels, backend: backendLabel, response_code: String(status || 502) });
      routeRequestDuration.observe({ destination_service: c.service.key, route: routeName, backend: backendLabel }, (performance.now() - started) / 1000);
      span?.setAttributes({ 'weft.route.backend': backendLabel, 'weft.route.retries': retries });
      span?.end({ status: ds.rstCode === NGHTTP2_NO_ERROR ? status : 0, grpcStatus });
    });
    const local = (code: number, text: string) => {
      status = code;
      if (grpc) grpcStatus = GRPC_CODE[code] ?? 2;
      answer(ds, code, text, grpc);
    };
    if (entries.length > 0 && !entry) return local(404, 'no route matched');
    const rule = entry ? entry.rule : { name: '', matches: [], filters: [], backends: [{ service: c.service.key, port: c.port, weight: 1, filters: [] }] };

    const out: HeaderMap = {};
    for (const [k, v] of Object.entries(headers)) if (!CONNECTION_SPECIFIC.includes(k)) out[k] = v;
    let authority = headers[':authority'];
    const upstream = new UpstreamRequest({ headers: out, setHost: (h) => (authority = h), original: { host: String(headers[':authority'] ?? headers.host ?? ''), path, query }, match: entry?.match });
    /** False when a redirect answered the request. */
    const apply = (filters: RouteFilter[]): boolean => {
      const r = upstream.apply(filters);
      if (!r) return true;
      status = r.status;
      if (!ds.headersSent && !ds.closed) ds.respond({ ':status': r.status, location: r.location }, { endStream: true });
      if (!ds.readableEnded && !ds.closed) ds.close(NGHTTP2_NO_ERROR);
      return false;
    };
    if (!apply(rule.filters)) return;
    const backend = pickWeighted(rule.backends, this.#d.random());
    if (!backend || backend.invalid !== undefined) {
      if (backend) backendLabel = backendName(backend);
      return local(500, backend?.invalid ?? 'no backend with weight');
    }
    backendLabel = backendName(backend);
    if (!apply(backend.filters)) return;
    if (span) Object.assign(out, span.headers);
    // Pseudo-headers are the request's (after a rewrite), never a header modifier's.
    out[':method'] = method;
    out[':path'] = upstream.upstreamPath + (query ? `?${query}` : '');
    if (headers[':scheme'] !== undefined) out[':scheme'] = headers[':scheme'];
    if (authority !== undefined) out[':authority'] = authority;
    else delete out[':authority'];

    const requestMs = rule.timeouts?.requestMs;
    const timer = requestMs
      ? setTimeout(() => {
          routeTimeouts.inc({ ...labels, timeout: 'request' });
          if (!ds.headersSent) local(504, 'upstream request timeout');
          else ds.close(NGHTTP2_CANCEL);
        }, requestMs)
      : undefined;
    ds.once('close', () => clearTimeout(timer));
    ds.pause();
    const chosen = entry ? this.#d.mirrors.choose(entry.rule.mirrors, backend.mirrors) : [];
    if (chosen.length > 0) this.#mirror(c, ds, chosen, out, endStream, { destination_service: c.service.key, route: routeName });

    const retry = rule.retry;
    const attempts = retry ? Math.max(1, retry.attempts) : 1;
    const budget = this.#d.budgets.request(labels, retry, backend);
    const call: Call = {
      c,
      ds,
      backend,
      headers: out,
      backendMs: rule.timeouts?.backendRequestMs,
      labels,
      tried: new Set(),
      forwarded: false,
      failed: false,
      complete: false,
      body: new ReplayBody(ds, { empty: endStream, bound: attempts > 1 ? MAX_RETRY_BODY : 0, declaredLength: Number(headers['content-length'] ?? 0), onFail: () => (call.failed = true) }),
    };
    ds.once('close', () => {
      const us = call.current;
      if (!us || us.closed || us.destroyed) return;
      const ok = ds.rstCode === NGHTTP2_NO_ERROR && call.complete && !call.failed;
      us.close(ok ? NGHTTP2_NO_ERROR : ds.rstCode || NGHTTP2_CANCEL);
    });
    // undefined: the status stays (trailers bring only the gRPC status).
    const setStatus = (s: number | undefined, g?: number) => {
      if (s !== undefined) status = s;
      if (g !== undefined) grpcStatus = g;
    };
    const run = (n: number): void =>
      void this.#attempt(call, (o) => {
        if (ds.closed || ds.destroyed) return void o.response?.us.close(NGHTTP2_CANCEL);
        // Nothing is tried again once the client has had part of an answer or the body outgrew what is kept.
        const more = call.body.replayable && !call.forwarded ? attempts : n;
        const next = retryAfter(o, { retry, n, attempts: more, budget, labels, backend: backendLabel });
        if (next === 'exhausted') {
          call.current = undefined;
          call.body.detach();
          o.response?.us.close(NGHTTP2_CANCEL);
          return local(503, 'retry budget exhausted');
        }
        if (next === 'retry') {
          retries++;
          call.current = undefined;
          call.body.detach();
          o.response?.us.close(NGHTTP2_CANCEL);
          const backoff = backoffAfter(retry, n);
          if (backoff === 0) return run(n + 1);
          const wait = setTimeout(() => !ds.closed && run(n + 1), backoff);
          ds.once('close', () => clearTimeout(wait));
          return;
        }
        if (!o.response) {
          call.current = undefined;
          call.body.detach();
          return local(o.status, o.reason);
        }
        call.body.settle();
        this.#deliver(call, o.response, upstream.responseMods, setStatus);
      });
    run(1);
  }

  /**
   * The copies of a stream its RequestMirror filters ask for: its body is collected beside the
   * primary's (the primary's own 'data' listener drives the flow; this one only looks), up to
   * the mirrors' maxBodyBytes, and each copy sent as a stream of its own once the request ended.
   */
  #mirror(c: RoutedStreamConnection, ds: http2.ServerHttp2Stream, chosen: RouteMirror[], headers: HeaderMap, endStream: boolean, l: MirrorLabels): void {
    let trailers: http2.IncomingHttpHeaders | undefined;
    const send = (body: Buffer) => {
      for (const m of chosen) void this.#mirrorOne(c, m, l, { ...headers }, body, trailers);
    };
    if (endStream) return send(Buffer.alloc(0));
    ds.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
    this.#d.mirrors.collect(l, chosen, ds, send);
  }

  async #mirrorOne(c: RoutedStreamConnection, m: RouteMirror, l: MirrorLabels, headers: HeaderMap, body: Buffer, trailers: http2.IncomingHttpHeaders | undefined): Promise<void> {
    const slot = this.#d.mirrors.begin(l, m);
    if (!slot) return;
    const { target, release } = slot;
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      release({ result: 'failed', reason: 'timeout' });
    }, this.#d.mirrors.limits.timeoutMs);
    const r = await this.#session(c, target.service, target.target);
    // Out of time while the session opened: its slot is already given back, so nothing is sent.
    if (late) return;
    if (!r.session) {
      clearTimeout(timer);
      return release({ result: 'failed', reason: r.refused ? 'refused' : 'connect' });
    }
    let us: http2.ClientHttp2Stream;
    try {
      us = r.session.request({ ...headers, ...(body.length > 0 ? { 'content-length': String(body.length) } : {}) }, { endStream: body.length === 0 && !trailers, waitForTrailers: trailers !== undefined });
    } catch {
      clearTimeout(timer);
      return release({ result: 'failed', reason: 'request' });
    }
    us.on('error', ignore);
    // A copy still waiting when its time is up is cancelled (release above already counted it).
    const cancel = setTimeout(() => us.close(NGHTTP2_CANCEL), this.#d.mirrors.limits.timeoutMs);
    us.once('response', () => {
      clearTimeout(timer);
      clearTimeout(cancel);
      release({ result: 'sent' });
      // Read and dropped: an unread answer would hold the shared session's window.
      us.resume();
    });
    us.once('close', () => {
      clearTimeout(timer);
      clearTimeout(cancel);
      release({ result: 'failed', reason: 'reset' });
    });
    if (trailers) us.once('wantTrailers', () => sendTrailers(us, trailers, ignore));
    if (body.length > 0 || trailers) us.end(body);
  }

  /**
   * An upstream session to one ready endpoint of the backend, preferring one this stream has not
   * tried; a failed connect tries another (up to CONNECT_TRIES, not a retry of the rule's: nothing
   * was sent) and counts towards ejecting the endpoint.
   */
  async #open(c: RoutedStreamConnection, backend: RouteBackend, ds: http2.ServerHttp2Stream, tried: Set<string>): Promise<Opened> {
    const b = backendEndpoints(this.#d.upstream.p.store, backend.service, backend.port);
    if (!b) return { done: ignore, addr: '', failure: 'backend not found', reason: 'backend not found' };
    const { svc, addrOf } = b;
    let failed: Opened = { done: ignore, addr: '', failure: 'no ready endpoint', reason: 'no ready endpoint' };
    for (let n = 0; n < CONNECT_TRIES && !ds.closed; n++) {
      const ready = this.#d.ejections.usable(b.ready, addrOf, Date.now());
      const fresh = ready.filter((e) => !tried.has(addrOf(e)));
      const ep = pickP2C(fresh.length > 0 ? fresh : ready, (e) => this.#d.outstanding.get(addrOf(e)), this.#d.random);
      if (!ep) break;
      const target = b.target(ep);
      const addr = `${target.ip}:${target.port}`;
      tried.add(addr);
      const done = this.#d.outstanding.begin(addr);
      const r = await this.#session(c, svc, target);
      if (r.session) return { session: r.session, done, addr, reason: '' };
      done();
      if (r.refused) return { done: ignore, addr, failure: 'refused', reason: r.reason };
      if (this.#d.ejections.failure(addr, Date.now())) routeEjections.inc({ backend: backendName(backend) });
      failed = { done: ignore, addr, failure: 'connect', reason: r.reason };
    }
    return failed;
  }

  /** The shared session of this client identity to one endpoint, opened on first use. */
  async #session(c: RoutedStreamConnection, svc: Service, target: Address): Promise<{ session?: http2.ClientHttp2Session; refused?: boolean; reason: string }> {
    const key = `${c.source.identity}\n${target.ip}:${target.port}`;
    const existing = await this.#sessions.get(key);
    if (existing && !existing.closed && !existing.destroyed) return { session: existing, reason: '' };
    let failure: { refused: boolean; reason: string } = { refused: false, reason: 'connect failed' };
    const opening = (async () => {
      const opened = await openUpstream(this.#d.upstream, c.source, target, svc, c.peer, AbortSignal.timeout(this.#d.upstream.p.connectTimeoutMs + 5000));
      if (!opened.ok) {
        failure = { refused: opened.refused, reason: opened.reason };
        return undefined;
      }
      // An error of the tunnel stream or socket is the session's to report (as its close).
      opened.stream.on('error', ignore);
      const session = http2.connect(UPSTREAM_ORIGIN, { createConnection: () => opened.stream, settings: SETTINGS, maxSessionMemory: 64 });
      session.on('error', ignore);
      // Many calls share the session: its window must not hold them to 64 KiB per round trip together.
      session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
      session.setTimeout(IDLE_MS, () => session.close());
      const forget = () => {
        if (this.#sessions.get(key) === opening) this.#sessions.delete(key);
      };
      session.once('goaway', forget);
      session.once('close', forget);
      opened.stream.once('close', () => session.destroy());
      return session;
    })();
    this.#sessions.set(key, opening);
    const session = await opening;
    if (!session) {
      if (this.#sessions.get(key) === opening) this.#sessions.delete(key);
      return failure;
    }
    return { session, reason: '' };
  }

  /**
   * One attempt of a call: a session, the request on it, until the response's headers, a failure,
   * or the end of timeouts.backendRequest (the attempt is then cancelled). `settle` hears the
   * outcome once, from the event that decided it, so that trailers or a reset arriving right
   * after the headers find the listeners of whatever it decides.
   */
  async #attempt(k: Call, settle: (o: Outcome) => void): Promise<void> {
    let settled = false;
    let timedOut = false;
    let us: http2.ClientHttp2Stream | undefined;
    const once = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      settle(o);
    };
    const timer = k.backendMs
      ? setTimeout(() => {
          timedOut = true;
          routeTimeouts.inc({ ...k.labels, timeout: 'backend_request' });
          once({ status: 504, failure: 'backend_request', reason: 'upstream request timeout' });
          us?.close(NGHTTP2_CANCEL);
        }, k.backendMs)
      : undefined;
    const up = await this.#open(k.c, k.backend, k.ds, k.tried);
    if (settled || k.ds.closed || k.ds.destroyed) {
      settled = true;
      clearTimeout(timer);
      return up.done();
    }
    if (!up.session) return once({ status: up.failure === 'refused' ? 403 : 503, failure: up.failure, reason: up.reason });
    try {
      us = up.session.request(k.headers, k.body.options);
    } catch {
      up.done();
      return once({ status: 502, failure: 'reset', reason: 'upstream refused the request' });
    }
    const s = us;
    k.current = s;
    s.on('error', ignore);
    s.once('close', up.done);
    const response: UpstreamResponse = { us: s, head: {}, flags: 0 };
    // Trailers are announced as they arrive, not in turn with the body: kept from the start.
    s.on('trailers', (t: http2.IncomingHttpHeaders) => (response.trailers = t));
    s.on('headers', (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
      if ((h[':status'] ?? 0) >= 200 || settled || k.ds.headersSent || k.ds.closed) return;
      try {
        k.ds.additionalHeaders(h);
        k.forwarded = true;
      } catch {
        // a 1xx Node will not send is dropped; the final response still goes
      }
    });
    s.once('response', (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, flags: number) => {
      this.#d.ejections.success(up.addr);
      response.head = h;
      response.flags = flags;
      // Trailers-only (the status in the only HEADERS frame): a gRPC call that failed before any answer.
      const trailersOnly = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      once({ status: h[':status'] ?? 0, reason: '', response, grpcStatus: trailersOnly ? grpcStatusOf(h['grpc-status']) : undefined });
    });
    s.once('close', () => once({ status: 502, failure: timedOut ? 'backend_request' : 'reset', reason: 'upstream reset' }));
    k.body.attach(s);
  }

  /** The response of the attempt that answers the call, passed on to the client. */
  #deliver(k: Call, r: UpstreamResponse, responseMods: ResponseModifier[], setStatus: (s: number | undefined, grpcStatus?: number) => void): void {
    const ds = k.ds;
    const us = r.us;
    const grpc = isGrpc(String(k.headers['content-type'] ?? ''));
    const respEnd = (r.flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    const out = { ...r.head } as HeaderMap;
    for (const m of responseMods) modifyHeaders(out, m.modifier);
    setStatus(r.head[':status'] ?? 0, grpcStatusOf(r.head['grpc-status']));
    const trailed = (t: http2.IncomingHttpHeaders) => setStatus(undefined, grpcStatusOf(t['grpc-status']));
    if (r.trailers) trailed(r.trailers);
    us.on('trailers', trailed);
    if (respEnd) k.complete = true;

    us.once('close', () => {
      if (k.complete && us.rstCode === NGHTTP2_NO_ERROR) {
        // Answered before the whole upload arrived: the rest is read and dropped.
        if (!ds.readableEnded && !ds.destroyed) ds.resume();
        return;
      }
      k.failed = true;
      if (ds.closed || ds.destroyed) return;
      setStatus(502);
      if (!ds.headersSent) return answer(ds, 502, 'upstream reset', grpc);
      ds.close(us.rstCode && us.rstCode !== NGHTTP2_NO_ERROR ? us.rstCode : NGHTTP2_INTERNAL_ERROR);
    });
    if (ds.closed || ds.destroyed) return;
    try {
      ds.respond(out, { endStream: respEnd, waitForTrailers: !respEnd });
    } catch {
      k.failed = true;
      setStatus(502);
      return void ds.close(NGHTTP2_INTERNAL_ERROR);
    }
    if (respEnd) return;
    ds.on('wantTrailers', () => sendTrailers(ds, r.trailers, () => (k.failed = true)));
    ds.on('drain', () => us.resume());
    us.on('data', (chunk: Buffer) => {
      if (!ds.destroyed && !ds.write(chunk)) us.pause();
    });
    us.once('end', () => {
      if (us.closed && us.rstCode !== NGHTTP2_NO_ERROR) return;
      k.complete = true;
      if (!ds.closed && !ds.destroyed) ds.end();
    });
  }
}

/** An answer of the agent's own: a gRPC status for a gRPC call (its clients read no HTTP status), else text. */
function answer(ds: http2.ServerHttp2Stream, status: number, text: string, grpc: boolean): void {
  if (ds.headersSent || ds.closed || ds.destroyed) return;
  if (grpc) ds.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(GRPC_CODE[status] ?? 2), 'grpc-message': grpcMessage(text) }, { endStream: true });
  else {
    const body = Buffer.from(`${text}\n`);
    ds.respond({ ':status': status, 'content-type': 'text/plain', 'content-length': body.length });
    ds.end(body);
  }
  // The rest of an upload is not wanted: the client may stop sending.
  if (!ds.readableEnded) ds.close(NGHTTP2_NO_ERROR);
}

function grpcStatusOf(v: string | string[] | undefined): number | undefined {
  const n = Number(joinValues(v));
  return v === undefined || !Number.isInteger(n) ? undefined : n;
}

function backendName(b: RouteBackend): string {
  return `${b.service}:${b.port}`;
}

function ignore(): void {}
