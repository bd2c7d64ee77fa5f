// The routed outbound path: HTTP/1.1 from a client pod to a Service port that has routes for the
// client's namespace. Each request is matched against the routes in force when it arrives (a
// route change reaches the next request on a keep-alive connection), then filtered, given a
// backend by weight and an endpoint by power of two choices, and sent on an upstream connection
// kept open between requests (pool.ts; opened by upstream.ts), within the rule's timeouts, retried
// as the rule says and the retry budget allows. A large or chunked request body is streamed on a
// connection of its own instead, and not retried. HTTP/2 with prior knowledge (h2c, gRPC) is
// routed per stream by h2.ts; anything else goes back to the L4 path untouched.
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { RouteBackend, RouteFilter, RouteRule } from '../../api/route.ts';
import type { Address } from '../native/sockopt.ts';
import { peerOf } from '../proxy/relay.ts';
import { modifyHeaders, UpstreamRequest, type HeaderMap } from './filters.ts';
import { routedSpanAttributes } from './span.ts';
import { findEntry, splitTarget, type MatchEntry } from './match.ts';
import { routeEjections, routeRequestDuration, routeRequests, routeTimeouts } from './metrics.ts';
import { backoffAfter, MAX_RETRY_BODY, RetryBudgets, retryAfter, type RetryLabels } from './retry.ts';
import { backendEndpoints, Ejections, Outstanding, pickP2C, pickWeighted, type Random } from './select.ts';
import { RouteTable } from './table.ts';
import { H2Router } from './h2.ts';
import { Mirrors } from './mirror.ts';
import { UpstreamOpenError, UpstreamPool, type PoolRequestOptions } from './pool.ts';
import { openUpstream, type UpstreamDeps } from './upstream.ts';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

interface RoutedConnection {
  source: Workload;
  service: Service;
  port: number;
  peer: string;
}

interface Attempt {
  status: number;
  response?: IncomingMessage;
  /** Why there is no response: connect, refused, backend_request (timeout), reset. */
  failure?: string;
  endpoint?: string;
}

export class RouteProxy {
  readonly table: RouteTable;
  readonly #d: UpstreamDeps;
  readonly #random: Random;
  readonly #outstanding = new Outstanding();
  readonly #ejections = new Ejections();
  readonly #budgets = new RetryBudgets();
  readonly #pools = new Map<string, UpstreamPool>();
  readonly #server = createServer({ keepAlive: true, requireHostHeader: false });
  readonly #h2: H2Router;
  readonly mirrors: Mirrors;

  constructor(d: UpstreamDeps, random: Random = Math.random) {
    this.#d = d;
    this.#random = random;
    this.table = new RouteTable(d.p.store);
    this.mirrors = new Mirrors(d, random);
    this.#h2 = new H2Router({ upstream: d, table: this.table, random, outstanding: this.#outstanding, ejections: this.#ejections, mirrors: this.mirrors, budgets: this.#budgets });
    this.#server.keepAliveTimeout = d.p.idleTimeoutMs;
    this.#server.headersTimeout = 60_000;
    this.#server.requestTimeout = 0;
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const c = (req.socket as Socket & { weftRoute?: RoutedConnection }).weftRoute;
      if (!c) return void res.socket?.destroy();
      void this.#handle(c, req, res).catch(() => {
        if (!res.headersSent) reply(res, 502, 'upstream error');
        else res.destroy();
      });
    });
    // A client that is not HTTP/1 after all, or a broken request: answered by node:http with 400.
    this.#server.on('clientError', (_err, socket: Duplex) => socket.destroy());
  }

  /** Whether this client's connections to the Service port are routed at all (HTTPRoutes or GRPCRoutes). */
  routes(source: Workload, service: Service, port: number): boolean {
    return this.table.entries(source.namespace, service.key, port, true).length > 0;
  }

  /**
   * Serves a connection at L7: HTTP/1 here, HTTP/2 with prior knowledge (h2c, gRPC) in h2.ts.
   * `fallback` gets it back (its first bytes unread) when the client speaks neither.
   */
  serve(down: Socket, source: Workload, service: Service, port: number, fallback: () => void): void {
    down.once('data', (first: Buffer) => {
      down.pause();
      down.unshift(first);
      if (first.subarray(0, 3).toString('latin1') === 'PRI') return this.#h2.serve(down, source, service, port);
      if (!/^[A-Z]+ /.test(first.subarray(0, 8).toString('latin1'))) return fallback();
      (down as Socket & { weftRoute?: RoutedConnection }).weftRoute = { source, service, port, peer: peerOf(down) };
      this.#server.emit('connection', down);
      down.resume();
    });
  }

  async #handle(c: RoutedConnection, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const { path, query } = splitTarget(req.url ?? '/');
    const view = { method: req.method ?? 'GET', path, query, headers: req.headers };
    const entries = this.table.entries(c.source.namespace, c.service.key, c.port);
    // No route for this client any more (deleted while the connection stayed open): the Service itself.
    const entry: MatchEntry | undefined = entries.length === 0 ? undefined : findEntry(entries, view);
    const routeName = entry ? entry.route.key : 'none';
    const ruleName = entry ? entry.rule.name : '';
    const labels = { source_workload: c.source.name, source_workload_namespace: c.source.namespace, destination_service: c.service.key, route: routeName, rule: ruleName };
    // The client span (tracing on): the destination agent's server span becomes its child, through
    // the trace headers set on the upstream request below. It ends with the response's head.
    const span = this.#d.p.tracing?.startClientSpan(
      { method: view.method, path, host: String(req.headers.host ?? ''), protocol: 'http/1.1', grpc: false, header: (name) => headerValue(req.headers[name]) },
      {
        attributes: routedSpanAttributes(c.source, c.service, routeName, ruleName),
        port: c.port,
        samplingRatio: this.#d.p.tracing.ratioFor(c.source),
      },
    );
    let retries = 0;
    const finish = (backend: string, status: number) => {
      routeRequests.inc({ ...labels, backend, response_code: String(status) });
      routeRequestDuration.observe({ destination_service: c.service.key, route: routeName, backend }, (performance.now() - started) / 1000);
      span?.setAttributes({ 'weft.route.backend': backend, 'weft.route.retries': retries });
      span?.end({ status });
    };
    if (entries.length > 0 && !entry) {
      req.resume();
      reply(res, 404, 'no route matched');
      return finish('', 404);
    }
    const rule: RouteRule = entry ? entry.rule : { name: '', matches: [], filters: [], backends: [{ service: c.service.key, port: c.port, weight: 1, filters: [] }] };

    const headers: HeaderMap = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    if (span) Object.assign(headers, span.headers);
    const upstream = new UpstreamRequest({ headers, setHost: (h) => (headers.host = h), original: { host: String(req.headers.host ?? ''), path, query }, match: entry?.match });
    const applyFilters = (filters: RouteFilter[]): boolean => {
      const r = upstream.apply(filters);
      if (!r) return true;
      req.resume();
      res.writeHead(r.status, { location: r.location, 'content-length': '0' }).end();
      finish('', r.status);
      return false;
    };
    if (!applyFilters(rule.filters)) return;
    const backend = pickWeighted(rule.backends, this.#random());
    if (!backend || backend.invalid !== undefined) {
      req.resume();
      reply(res, 500, backend?.invalid ?? 'no backend with weight');
      return finish(backend ? backendName(backend) : '', 500);
    }
    if (!applyFilters(backend.filters)) return;
    const bname = backendName(backend);

    // The request's own deadline (timeouts.request) bounds every attempt and backoff.
    const deadline = new AbortController();
    let timedOut = false;
    const requestMs = rule.timeouts?.requestMs;
    const timer = requestMs
      ? setTimeout(() => {
          timedOut = true;
          routeTimeouts.inc({ ...pick(labels), timeout: 'request' });
          deadline.abort();
        }, requestMs)
      : undefined;
    res.once('close', () => {
      clearTimeout(timer);
      deadline.abort();
    });

    const retry = rule.retry;
    const budget = this.#budgets.request(labels, retry, backend);
    let attempts = retry ? Math.max(1, retry.attempts) : 1;
    // Bodies up to MAX_RETRY_BODY are read whole (a retry can send them again; the connection can be pooled); larger ones are streamed.
    let body: Buffer | undefined;
    const len = Number(req.headers['content-length'] ?? '0');
    if (req.headers['transfer-encoding'] === undefined && len <= MAX_RETRY_BODY) body = await readBody(req);
    else attempts = 1;
    if (body && (body.length > 0 || req.headers['content-length'] !== undefined)) headers['content-length'] = String(body.length);
    const upstreamTarget = upstream.upstreamPath + (query ? `?${query}` : '');
    const onPipe = this.#mirror(c, rule, backend, req, body, { method: view.method, path: upstreamTarget, headers }, { destination_service: c.service.key, route: routeName });

    const tried = new Set<string>();
    let last: Attempt = { status: 503, failure: 'no endpoint' };
    for (let n = 1; n <= attempts; n++) {
      if (deadline.signal.aborted) break;
      last = await this.#attempt(c, backend, { method: view.method, path: upstreamTarget, headers, body: body ?? req, tried, onPipe }, rule, deadline.signal, labels);
      const next = retryAfter(last, { retry, n, attempts, budget, labels, backend: bname });
      if (next === 'exhausted') {
        last.response?.destroy();
        last = { status: 503, failure: 'retry budget exhausted' };
      }
      if (next !== 'retry') break;
      retries++;
      last.response?.destroy();
      const backoff = backoffAfter(retry, n);
      if (backoff > 0) await sleep(backoff, deadline.signal);
    }
    if (timedOut || (deadline.signal.aborted && !last.response && !res.destroyed)) {
      last.response?.destroy();
      if (!res.headersSent && !res.destroyed) reply(res, 504, 'upstream request timeout');
      return finish(bname, 504);
    }
    if (!last.response) {
      if (!res.headersSent && !res.destroyed) reply(res, last.failure === 'refused' ? 403 : last.failure === 'backend_request' ? 504 : 503, last.failure ?? 'unavailable');
      return finish(bname, last.failure === 'refused' ? 403 : last.failure === 'backend_request' ? 504 : 503);
    }
    const up = last.response;
    const out: HeaderMap = { ...up.headers };
    for (const h of HOP_BY_HOP) delete out[h];
    for (const m of upstream.responseMods) modifyHeaders(out, m.modifier);
    res.writeHead(up.statusCode ?? 502, out as IncomingHttpHeaders);
    finish(bname, up.statusCode ?? 502);
    await new Promise<void>((resolve) => {
      up.pipe(res);
      up.once('end', resolve);
      up.once('error', () => (res.destroy(), resolve()));
      res.once('close', () => (up.destroy(), resolve()));
    });
    clearTimeout(timer);
  }

  /** One attempt, and what it says about the endpoint (a failed connect counts towards ejecting it). */
  async #attempt(
    c: RoutedConnection,
    backend: RouteBackend,
    r: { method: string; path: string; headers: HeaderMap; body: Buffer | IncomingMessage; tried: Set<string>; onPipe?: (() => void) | undefined },
    rule: RouteRule,
    signal: AbortSignal,
    labels: RetryLabels,
  ): Promise<Attempt> {
    const a = await this.#attemptOnce(c, backend, r, rule, signal, labels);
    if (a.endpoint !== undefined) {
      if (a.failure === 'connect') {
        if (this.#ejections.failure(a.endpoint, Date.now())) routeEjections.inc({ backend: backendName(backend) });
      } else if (a.response) this.#ejections.success(a.endpoint);
    }
    return a;
  }

  async #attemptOnce(
    c: RoutedConnection,
    backend: RouteBackend,
    r: { method: string; path: string; headers: HeaderMap; body: Buffer | IncomingMessage; tried: Set<string>; onPipe?: (() => void) | undefined },
    rule: RouteRule,
    signal: AbortSignal,
    labels: RetryLabels,
  ): Promise<Attempt> {
    const b = backendEndpoints(this.#d.p.store, backend.service, backend.port);
    if (!b) return { status: 500, failure: 'backend not found' };
    const { svc, addrOf } = b;
    // Ejected endpoints are skipped while others are left; a retry prefers an endpoint not tried yet.
    const ready = this.#ejections.usable(b.ready, addrOf, Date.now());
    const fresh = ready.filter((e) => !r.tried.has(addrOf(e)));
    const ep = pickP2C(fresh.length > 0 ? fresh : ready, (e) => this.#outstanding.get(addrOf(e)), this.#random);
    if (!ep) return { status: 503, failure: 'no ready endpoint' };
    const target = b.target(ep);
    const addr = `${target.ip}:${target.port}`;
    r.tried.add(addr);
    const done = this.#outstanding.begin(addr);
    const attempt = new AbortController();
    const onAbort = () => attempt.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let attemptTimedOut = false;
    const backendMs = rule.timeouts?.backendRequestMs;
    const timer = backendMs
      ? setTimeout(() => {
          attemptTimedOut = true;
          routeTimeouts.inc({ ...pick(labels), timeout: 'backend_request' });
          attempt.abort();
        }, backendMs)
      : undefined;
    const cleanup = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    if (Buffer.isBuffer(r.body)) {
      const open = () => openUpstream(this.#d, c.source, target, svc, c.peer, attempt.signal);
      return this.#pooled(c.source.identity, target, { ...r, body: r.body }, open, attempt.signal, () => attemptTimedOut, cleanup, done, addr, 0);
    }
    const opened = await openUpstream(this.#d, c.source, target, svc, c.peer, attempt.signal);
    if (!opened.ok) {
      cleanup();
      done();
      return { status: 503, failure: attemptTimedOut ? 'backend_request' : opened.refused ? 'refused' : 'connect', endpoint: addr };
    }
    const stream = opened.stream;
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const settle = (a: Attempt) => {
        if (settled) return;
        settled = true;
        cleanup();
        resolve(a);
      };
      const up = httpRequest({ method: r.method, path: r.path, headers: r.headers as IncomingHttpHeaders, setHost: false, createConnection: () => stream });
      up.on('response', (resp) => {
        resp.once('close', done);
        settle({ status: resp.statusCode ?? 502, response: resp, endpoint: addr });
      });
      up.on('error', () => {
        done();
        stream.destroy();
        settle({ status: 503, failure: attemptTimedOut ? 'backend_request' : 'reset', endpoint: addr });
      });
      attempt.signal.addEventListener('abort', () => up.destroy(new Error('aborted')), { once: true });
      if (Buffer.isBuffer(r.body)) up.end(r.body);
      else {
        r.body.pipe(up);
        r.onPipe?.();
      }
    });
  }

  /**
   * Sends the copies of a request its rule's and its backend's RequestMirror filters ask for, as
   * the request goes to the backend (after every filter). A buffered body is copied at once; a
   * streamed one (chunked, small enough) is collected beside the primary's upload, from the moment
   * that starts (the returned hook), and its copy sent when it ends.
   */
  #mirror(
    c: RoutedConnection,
    rule: RouteRule,
    backend: RouteBackend,
    req: IncomingMessage,
    body: Buffer | undefined,
    r: { method: string; path: string; headers: HeaderMap },
    l: { destination_service: string; route: string },
  ): (() => void) | undefined {
    const chosen = this.mirrors.choose(rule.mirrors, backend.mirrors);
    if (chosen.length === 0) return undefined;
    const send = (b: Buffer) => {
      for (const m of chosen) this.mirrors.sendHttp1(l, m, c.source, c.peer, { ...r, headers: { ...r.headers }, body: b });
    };
    if (body) return void send(body);
    if (Number(req.headers['content-length'] ?? '0') > this.mirrors.limits.maxBodyBytes) return void this.mirrors.drop(l, chosen, 'body_too_large');
    return () => this.mirrors.collect(l, chosen, req, send);
  }

  /**
   * One attempt on a pooled connection. A kept-alive connection the far end closed meanwhile
   * fails before any answer; the request never reached the backend, so it goes again on another
   * connection (at most 3 times), which is not a retry of the rule's.
   */
  #pooled(
    source: string,
    target: Address,
    r: { method: string; path: string; headers: HeaderMap; body: Buffer },
    open: PoolRequestOptions['weftOpen'],
    signal: AbortSignal,
    timedOut: () => boolean,
    cleanup: () => void,
    done: () => void,
    addr: string,
    again: number,
  ): Promise<Attempt> {
    let pool = this.#pools.get(source);
    if (!pool) this.#pools.set(source, (pool = new UpstreamPool()));
    return new Promise<Attempt>((resolve) => {
      let settled = false;
      const settle = (a: Attempt) => {
        if (settled) return;
        settled = true;
        cleanup();
        resolve(a);
      };
      const options: PoolRequestOptions = { host: target.ip, port: target.port, method: r.method, path: r.path, headers: r.headers, setHost: false, agent: pool, weftOpen: open };
      const up = httpRequest(options);
      up.on('response', (resp) => {
        resp.once('close', done);
        settle({ status: resp.statusCode ?? 502, response: resp, endpoint: addr });
      });
      up.on('error', (err) => {
        if (settled) return;
        if (up.reusedSocket && again < 3 && !signal.aborted) {
          settled = true;
          resolve(this.#pooled(source, target, r, open, signal, timedOut, cleanup, done, addr, again + 1));
          return;
        }
        done();
        const failure = timedOut() ? 'backend_request' : err instanceof UpstreamOpenError ? (err.refused ? 'refused' : 'connect') : 'reset';
        settle({ status: 503, failure, endpoint: addr });
      });
      signal.addEventListener('abort', () => up.destroy(new Error('aborted')), { once: true });
      up.end(r.body);
    });
  }
}

function backendName(b: RouteBackend): string {
  return `${b.service}:${b.port}`;
}

/** The labels a retry or timeout count takes (a counter throws on labels it does not have). */
function pick(l: RetryLabels): RetryLabels {
  return { source_workload: l.source_workload, source_workload_namespace: l.source_workload_namespace, destination_service: l.destination_service, route: l.route, rule: l.rule };
}

function reply(res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}
