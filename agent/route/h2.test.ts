// The routed path for h2c and gRPC-shaped requests, with real sockets: a client speaking HTTP/2
// with prior knowledge to the agent's routed path, backends that are real HTTP/2 servers. The
// GRPCRoute is compiled by the controller's own compile step, so the test covers the method match
// as the controller writes it. (Real gRPC libraries on both ends: tests/grpc-routing.test.ts.)
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import t, { type Test } from 'tap';
import type { Service } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { compileRoute, type RouteObject } from '../../controller/route/compile.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { StateStore } from '../state/store.ts';
import { routeRetries, routeRetriesRefused, routeTimeouts } from './metrics.ts';
import { RouteProxy } from './proxy.ts';
import { CLIENT_START, FLAG, FRAME, frame, headerBlock, rawH2Exchange, type RawH2Answer } from '../l7/h2-raw.ts';
import { h2Backend, h2Front, routeClient, routeFront } from './test-fixtures.ts';

const source = routeClient();

/** Every request a backend got, in order (the mirror tests read what the mirror backend saw). */
const received: { pod: string; path: string; headers: http2.IncomingHttpHeaders; body: string; trailers?: http2.IncomingHttpHeaders }[] = [];

/** An h2c backend that says who it is, echoes the request's headers, and ends with gRPC trailers. */
function backend(t: Test, name: string): Promise<number> {
  return h2Backend(t, (stream, headers) => {
    const chunks: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('trailers', (tr: http2.IncomingHttpHeaders) => (trailers = tr));
    stream.once('end', () => {
      received.push({ pod: name, path: String(headers[':path']), headers, body: Buffer.concat(chunks).toString(), ...(trailers ? { trailers } : {}) });
      if (headers[':path'] === '/slow') return void setTimeout(() => !stream.closed && stream.respond({ ':status': 200 }, { endStream: true }), 2000);
      const plain = Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith(':')));
      plain.host ??= headers[':authority'];
      stream.respond({ ':status': 200, 'content-type': String(headers['content-type'] ?? 'text/plain'), 'x-pod': name, 'x-from-backend': 'yes' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-trailer': name }));
      stream.end(JSON.stringify({ pod: name, path: headers[':path'], headers: plain, body: Buffer.concat(chunks).toString() }));
    });
  });
}

const svc = (name: string, ports: number[]): Service => ({
  key: `a/${name}`,
  namespace: 'a',
  name,
  clusterIPs: [`10.96.0.${ports[0] ?? 0 % 250}`],
  ports: [{ name: 'grpc', port: 7070, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' }],
  endpoints: ports.map((port) => ({ ip: '127.0.0.1', ports: { grpc: port }, ready: true })),
});

function grpcRoute(rules: object[], kind: 'GRPCRoute' | 'HTTPRoute' = 'GRPCRoute', annotations?: Record<string, string>): CompiledRoute {
  const raw: RouteObject = {
    metadata: { name: 'r', namespace: 'a', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', ...(annotations ? { annotations } : {}) },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 7070 }], rules: rules },
  };
  const services = new Map<string, Service>();
  for (const n of ['web', 'one', 'two']) services.set(`a/${n}`, svc(n, [1]));
  const r = compileRoute({ kind, route: raw, service: (k) => services.get(k) });
  if (!r.compiled) throw new Error(`not accepted: ${JSON.stringify(r.parents)}`);
  return r.compiled;
}

interface Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: { pod?: string; path?: string; headers?: Record<string, string>; body?: string };
  text: string;
}

/** A node's state holding these Services and one route. */
function storeOf(services: Service[], route: CompiledRoute): StateStore {
  const store = new StateStore();
  store.apply({
    type: 'snapshot',
    epoch: 'e1',
    revision: 1,
    config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' },
    resources: [...services.map((value) => ({ kind: 'Service' as const, value })), { kind: 'Route', value: route }],
  });
  return store;
}

async function setup(t: Test, route: CompiledRoute, ports: { web?: number } = {}): Promise<{ call: (path: string, headers?: Record<string, string>, body?: string) => Promise<Answer>; close: () => void; port: number }> {
  const [w0, one, two] = [await backend(t, 'web'), await backend(t, 'one'), await backend(t, 'two')];
  const w = ports.web ?? w0;
  const web = svc('web', [w]);
  const store = storeOf([web, svc('one', [one]), svc('two', [two])], route);
  const p = { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }), connectTimeoutMs: 2000, idleTimeoutMs: 10_000 };
  const proxy = new RouteProxy({ p, openTunnel: () => Promise.reject(new Error('the backend is not meshed: no tunnel')) });
  t.ok(proxy.routes(source, web, 7070), 'a port with only a GRPCRoute is parsed');
  const downs = new Set<net.Socket>();
  const front = net.createServer({ allowHalfOpen: true }, (down) => {
    downs.add(down);
    proxy.serve(down, source, web, 7070, () => down.destroy());
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const port = (front.address() as net.AddressInfo).port;
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {});
  const close = () => {
    client.close();
    for (const d of downs) d.destroy();
    front.close();
  };
  t.teardown(close);
  return { call: callOn(client), close, port };
}

/** A POST (gRPC-shaped unless the headers say otherwise) on an h2c session to the routed path. */
function callOn(client: http2.ClientHttp2Session): (path: string, headers?: Record<string, string>, body?: string) => Promise<Answer> {
  return (path, headers = {}, body = 'hello') =>
    new Promise<Answer>((resolve, reject) => {
      const s = client.request({ ':method': 'POST', ':path': path, ':authority': 'web.a:7070', 'content-type': 'application/grpc', te: 'trailers', ...headers });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      let data = '';
      s.on('response', (h) => (head = h));
      s.on('trailers', (tr: http2.IncomingHttpHeaders) => (trailers = tr));
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', reject);
      s.on('close', () => {
        let parsed: Answer['body'] = {};
        try {
          parsed = JSON.parse(data) as Answer['body'];
        } catch {
          // a local answer has no JSON body
        }
        resolve({ status: Number(head[':status'] ?? 0), headers: head, trailers, body: parsed, text: data });
      });
      s.end(body);
    });
}

t.test('GRPCRoute: method match, header match with a request header filter, response filter, trailers carried', async (t) => {
  const route = grpcRoute([
    { matches: [{ method: { service: 'pkg.Echo', method: 'Hello' } }], backendRefs: [{ name: 'one', port: 7070 }] },
    {
      matches: [{ method: { type: 'RegularExpression', service: 'pkg\\..*', method: 'Bye.*' }, headers: [{ name: 'x-canary', value: 'yes' }] }],
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-added', value: 'by-route' }], remove: ['x-drop'] } },
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-resp', value: 'r' }], remove: ['x-from-backend'] } },
      ],
      backendRefs: [{ name: 'two', port: 7070 }],
    },
  ]);
  const { call } = await setup(t, route);
  const a = await call('/pkg.Echo/Hello');
  t.equal(a.body.pod, 'one', 'the exact method went to its backend');
  t.equal(a.body.body, 'hello', 'the request body arrived');
  t.equal(a.trailers['grpc-status'], '0', 'the response trailers came back');
  t.equal(a.trailers['x-trailer'], 'one');
  t.equal(a.headers['x-from-backend'], 'yes');

  const b = await call('/pkg.Echo/ByeNow', { 'x-canary': 'yes', 'x-drop': 'gone' });
  t.equal(b.body.pod, 'two', 'the regular-expression method and the header went to the other backend');
  t.equal(b.body.headers?.['x-added'], 'by-route', 'RequestHeaderModifier set a header');
  t.notOk(b.body.headers && 'x-drop' in b.body.headers, 'RequestHeaderModifier removed a header');
  t.equal(b.body.headers?.['x-canary'], 'yes');
  t.equal(b.headers['x-resp'], 'r', 'ResponseHeaderModifier added a header');
  t.notOk('x-from-backend' in b.headers, 'ResponseHeaderModifier removed a header');

  const c = await call('/pkg.Echo/ByeNow');
  t.equal(c.headers['grpc-status'], '12', 'no rule matched: UNIMPLEMENTED, as a gRPC client reads it');
  t.equal(c.status, 200);
  const d = await call('/other.Svc/Hello');
  t.equal(d.headers['grpc-status'], '12', 'another service does not match an exact service');

  const e = await call('/anything', { 'content-type': 'text/plain' });
  t.equal(e.body.pod, 'web', 'a request that is not gRPC ignores GRPCRoutes and goes to the Service itself');
});

t.test('GRPCRoute: weighted backends, per call on one client connection', async (t) => {
  const route = grpcRoute([{ backendRefs: [{ name: 'one', port: 7070, weight: 3 }, { name: 'two', port: 7070, weight: 1 }, { name: 'web', port: 7070, weight: 0 }] }]);
  const { call } = await setup(t, route);
  const by: Record<string, number> = {};
  const N = 400;
  for (let i = 0; i < N; i += 20) {
    const answers = await Promise.all(Array.from({ length: 20 }, () => call('/pkg.Echo/Hello')));
    for (const a of answers) by[a.body.pod ?? ''] = (by[a.body.pod ?? ''] ?? 0) + 1;
  }
  t.equal((by.one ?? 0) + (by.two ?? 0), N, `every call answered by a weighted backend: ${JSON.stringify(by)}`);
  t.notOk(by.web, 'weight 0 is never chosen');
  const share = (by.two ?? 0) / N;
  // 400 draws at p=0.25: the standard deviation is 2.2 points; ±8 points is 3.7 of them.
  t.ok(share > 0.17 && share < 0.33, `two's share ${share.toFixed(3)} is 0.25 ± 0.08`);
});

t.test('a backend that resets a stream mid-response resets the client stream, never ends it cleanly', async (t) => {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    // waitForTrailers: else Node's close(code) ends the stream cleanly before its RST_STREAM.
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.write('partial');
    setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const route = grpcRoute([{ backendRefs: [{ name: 'one', port: 7070 }] }]);
  const { port } = server.address() as net.AddressInfo;
  const one = svc('one', [port]);
  const store = new StateStore();
  const web = svc('web', [1]);
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: web }, { kind: 'Service', value: one }, { kind: 'Route', value: route }] });
  const client = await h2Front(t, store, source, web, 7070);
  const s = client.request({ ':method': 'POST', ':path': '/pkg.Echo/Hello', 'content-type': 'application/grpc' });
  s.on('error', () => {});
  s.resume();
  s.end('x');
  await new Promise((resolve) => s.once('close', resolve)); // once() would reject on the stream's error
  t.equal(s.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR, 'the client saw the reset');
});

t.test('a client that sends the preface and then garbage loses its connection; the agent and other clients carry on', async (t) => {
  const route = grpcRoute([{ backendRefs: [{ name: 'one', port: 7070 }] }]);
  const { call, port } = await setup(t, route);
  for (const junk of [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff', 'latin1'), Buffer.from('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n', 'latin1'), Buffer.from('PRI')]) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.end(junk);
    s.resume();
    await new Promise((resolve) => s.once('close', resolve));
  }
  const a = await call('/pkg.Echo/Hello');
  t.equal(a.body.pod, 'one', 'a well-formed client is served after the malformed ones');
});

t.test('a request header list over 16 KiB is refused; the backend never sees it and the agent serves on', async (t) => {
  const b = await scripted(t, echo);
  const web = svc('web', [1]);
  const store = storeOf([web, svc('one', [b.port])], grpcRoute([{ backendRefs: [{ name: 'one', port: 7070 }] }]));
  const front = await routeFront(store, source, web, 7070);
  t.teardown(front.close);
  // A HEADERS frame and a CONTINUATION (each under the 16 KiB frame size), sent once the client has
  // acknowledged the agent's SETTINGS: before that, RFC 9113 has the protocol's defaults in force
  // and Node applies its own 64 KiB (checked by hand: 20 and 40 KB pass then, 70 KB is a GOAWAY).
  const fields = (big: number): [string, string][] => [[':method', 'POST'], [':scheme', 'http'], [':path', '/pkg.Echo/Hello'], [':authority', 'web.a:7070'], ['content-type', 'application/grpc'], ['x-big', 'a'.repeat(big)]];
  const request = (big: number): Promise<RawH2Answer> => {
    const block = headerBlock(fields(big));
    return rawH2Exchange(front.port, CLIENT_START, 500, Buffer.concat([frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 8000)), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(8000))]));
  };
  const small = await request(10_000);
  t.equal(small.status, 200, 'a 10 KB header list is served (the same frames)');
  const seen = b.seen.length;
  const big = await request(20_000);
  t.not(big.status, 200, `a 20 KB header list is not answered 200 (frames: ${big.frames.map((f) => f.type).join(',')})`);
  t.ok(big.frames.some((f) => f.type === FRAME.RST_STREAM), 'its stream is reset');
  t.equal(b.seen.length, seen, 'and never reached the backend');
  const after = await request(100);
  t.equal(after.status, 200, 'a new connection is served after it');
});

t.test('HTTPRoute on h2c: path matches per stream, timeouts.request, redirect and rewrite', async (t) => {
  const route = grpcRoute(
    [
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'one', port: 7070 }] },
      { matches: [{ path: { type: 'Exact', value: '/slow' } }], timeouts: { request: '100ms' }, backendRefs: [{ name: 'two', port: 7070 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301, hostname: 'x', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.a', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } }], backendRefs: [{ name: 'one', port: 7070 }] },
      { backendRefs: [{ name: 'two', port: 7070 }] },
    ],
    'HTTPRoute',
  );
  const { call } = await setup(t, route);
  const plain = { 'content-type': 'text/plain' };
  t.equal((await call('/api/v1', plain)).body.pod, 'one', 'a prefix match on an h2c request');
  t.equal((await call('/other', plain)).body.pod, 'two', 'the catch-all rule');
  t.equal((await call('/api/v1')).body.pod, 'one', 'HTTPRoutes apply to gRPC requests too');
  const slow = await call('/slow', plain);
  t.equal(slow.status, 504, 'timeouts.request answers 504 on HTTP/2');
  const slowGrpc = await call('/slow');
  t.equal(slowGrpc.headers['grpc-status'], '4', 'and DEADLINE_EXCEEDED to a gRPC call');
  const old = await call('/old/x?q=1', plain);
  t.equal(old.status, 301, 'RequestRedirect answers on HTTP/2');
  t.equal(old.headers.location, 'http://x:7070/new/x?q=1', 'with the rewritten Location');
  const rw = await call('/v1/items?q=2', plain);
  t.equal(rw.body.pod, 'one');
  t.equal(rw.body.path, '/v2/items?q=2', 'URLRewrite replaced the prefix; the query stayed');
  t.equal(rw.body.headers?.host, 'rewritten.a', 'and the authority');
});

t.test('bodies larger than every flow-control window cross both ways, several calls at once on one connection', async (t) => {
  const route = grpcRoute([{ backendRefs: [{ name: 'one', port: 7070 }, { name: 'two', port: 7070 }] }]);
  const { call } = await setup(t, route);
  const big = 'x'.repeat(3 * 1024 * 1024);
  const answers = await Promise.all([call('/pkg.Echo/Big', {}, big), call('/pkg.Echo/Big', {}, big), call('/pkg.Echo/Big', {}, big)]);
  for (const a of answers) {
    t.equal(a.body.body?.length, big.length, `3 MiB up and back, answered by ${a.body.pod ?? '?'}`);
    t.equal(a.trailers['grpc-status'], '0');
  }
});

t.test('a failed connect is tried on another endpoint before anything was sent: no call fails', async (t) => {
  const live = await backend(t, 'live');
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const dead = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  const route = grpcRoute([{ backendRefs: [{ name: 'one', port: 7070 }] }]);
  const web = svc('web', [1]);
  const store = new StateStore();
  const one: Service = { ...svc('one', [live]), endpoints: [dead, live, dead].map((port) => ({ ip: '127.0.0.1', ports: { grpc: port }, ready: true })) };
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: web }, { kind: 'Service', value: one }, { kind: 'Route', value: route }] });
  const client = await h2Front(t, store, source, web, 7070);
  const statuses: string[] = [];
  for (let i = 0; i < 20; i++) {
    const st = client.request({ ':method': 'POST', ':path': '/pkg.Echo/Hello', 'content-type': 'application/grpc' });
    st.on('error', () => {});
    let pod = '';
    st.on('response', (h) => (pod = String(h['x-pod'] ?? h['grpc-status'] ?? '')));
    st.resume();
    st.end('x');
    await new Promise((resolve) => st.once('close', resolve));
    statuses.push(pod);
  }
  t.same([...new Set(statuses)], ['live'], `every call reached the live endpoint (${statuses.join(',')})`);
});

t.test('RequestMirror on h2c: a gRPC call is copied (headers, body) to the mirror; a mirror that refuses leaves the call alone', async (t) => {
  // A port nothing listens on: the Service "two" of this test is a mirror that refuses.
  const closed = net.createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const closedPort = (closed.address() as net.AddressInfo).port;
  closed.close();
  const route = grpcRoute([
    { matches: [{ method: { service: 'pkg.Echo', method: 'Hello' } }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'two', port: 7070 } } }], backendRefs: [{ name: 'one', port: 7070 }] },
    { matches: [{ method: { service: 'pkg.Echo', method: 'Down' } }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'web', port: 7070 } } }], backendRefs: [{ name: 'one', port: 7070 }] },
  ]);
  const { call } = await setup(t, route, { web: closedPort });
  const before = received.length;
  const a = await call('/pkg.Echo/Hello', { 'x-test': 'copied' }, 'mirror me');
  t.equal(a.body.pod, 'one', 'the call went to its backend');
  t.equal(a.trailers['grpc-status'], '0');
  for (let i = 0; i < 50 && !received.slice(before).some((r) => r.pod === 'two'); i++) await new Promise((r) => setTimeout(r, 20));
  const copy = received.slice(before).find((r) => r.pod === 'two');
  t.equal(copy?.path, '/pkg.Echo/Hello', 'the mirror got the call');
  t.equal(copy?.headers['x-test'], 'copied', 'with its headers');
  t.equal(copy?.body, 'mirror me', 'and its body');
  const down = await call('/pkg.Echo/Down', {}, 'x');
  t.equal(down.body.pod, 'one', 'a mirror that refuses: the call still answered by its backend');
  t.equal(down.trailers['grpc-status'], '0');
});

/** What a scripted backend got: each call's body size, and the stream's reset code once it closed. */
interface Seen {
  body: string;
  rst?: number;
}

/**
 * An h2c backend whose `answer` decides each call's response: after the whole body (or, `early`,
 * at its first bytes). `n` counts the calls from 1.
 */
async function scripted(t: Test, answer: (s: http2.ServerHttp2Stream, n: number, body: string) => void, o: { early?: (n: number) => boolean } = {}): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const port = await h2Backend(t, (stream) => {
    const entry: Seen = { body: '' };
    seen.push(entry);
    const n = seen.length;
    stream.once('close', () => (entry.rst = stream.rstCode));
    stream.on('data', (c: Buffer) => (entry.body += c.toString()));
    if (o.early?.(n)) return void stream.once('data', () => answer(stream, n, entry.body));
    stream.once('end', () => answer(stream, n, entry.body));
  });
  return { port, seen };
}

const echo = (s: http2.ServerHttp2Stream, n: number, body: string) => {
  if (s.closed) return;
  s.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-attempt': String(n) }, { waitForTrailers: true });
  s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
  s.end(JSON.stringify({ pod: 'scripted', body }));
};
const unavailable = (s: http2.ServerHttp2Stream, n: number) => {
  if (!s.closed) s.respond({ ':status': 503, 'x-attempt': String(n) }, { endStream: true });
};

/** The routed path for one HTTPRoute rule (its backend the Service "one" with these endpoints). */
async function ruleFront(
  t: Test,
  rule: object,
  ports: number[],
  o: { kind?: 'GRPCRoute' | 'HTTPRoute'; annotations?: Record<string, string> } = {},
): Promise<{ call: (path: string, headers?: Record<string, string>, body?: string) => Promise<Answer>; client: http2.ClientHttp2Session }> {
  const route = grpcRoute([{ ...rule, backendRefs: [{ name: 'one', port: 7070 }] }], o.kind ?? 'HTTPRoute', o.annotations);
  const web = svc('web', [1]);
  const store = storeOf([web, svc('one', ports)], route);
  const client = await h2Front(t, store, source, web, 7070);
  return { call: callOn(client), client };
}

/** A counter's total over the series whose labels include `match`. */
async function total(c: { get(): Promise<{ values: { value: number; labels: Record<string, string | number> }[] }> }, match: Record<string, string>): Promise<number> {
  const { values } = await c.get();
  return values.filter((v) => Object.entries(match).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

const ROUTE = { destination_service: 'a/web', route: 'HTTPRoute/a/r' };
const plain = { 'content-type': 'text/plain' };

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
}

t.test('retry on h2c: a 503 from one endpoint is tried again on the other, its body sent again whole; counted', async (t) => {
  const bad = await scripted(t, unavailable);
  const good = await scripted(t, echo);
  // The backoff lets the failed attempt's stream close first, so both endpoints have nothing
  // outstanding at the retry and only the preference for an untried one steers it.
  const { call } = await ruleFront(t, { retry: { codes: [503], attempts: 1, backoff: '5ms' } }, [bad.port, good.port]);
  const before = await total(routeRetries, { ...ROUTE, reason: '503' });
  const statuses: number[] = [];
  // Each call's first endpoint is drawn at random: go on until the failing one was drawn often.
  for (let i = 0; i < 100 && bad.seen.length < 10; i++) {
    const a = await call('/pkg.Echo/Hello', {}, `call-${i}`);
    statuses.push(a.status);
    t.equal(a.body.body, `call-${i}`, `call ${i}: the body the answering endpoint got`);
    t.equal(a.trailers['grpc-status'], '0', `call ${i}: the answer's trailers came back`);
  }
  t.ok(bad.seen.length >= 10, `the failing endpoint was drawn ${bad.seen.length} times`);
  t.same([...new Set(statuses)], [200], 'every call was answered 200: a retry goes to the endpoint not tried yet');
  t.ok(bad.seen.every((s) => s.body.startsWith('call-')), 'the failing endpoint got the bodies too');
  t.equal((await total(routeRetries, { ...ROUTE, reason: '503' })) - before, bad.seen.length, 'each 503 was one retry in weft_route_retries_total');
});

/** A gRPC call that fails before any answer: trailers-only, the status in the only HEADERS frame. */
const grpcFailure = (code: number) => (s: http2.ServerHttp2Stream, n: number) => {
  if (!s.closed) s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'x-attempt': String(n) }, { endStream: true });
};
const GRPC_ROUTE = { destination_service: 'a/web', route: 'GRPCRoute/a/r' };

t.test('retry.weft.dev/grpc-codes on a GRPCRoute: a trailers-only UNAVAILABLE is tried again on the other endpoint; counted as grpc_14', async (t) => {
  const bad = await scripted(t, grpcFailure(14));
  const good = await scripted(t, echo);
  const { call } = await ruleFront(t, {}, [bad.port, good.port], { kind: 'GRPCRoute', annotations: { 'retry.weft.dev/grpc-codes': 'unavailable' } });
  const before = await total(routeRetries, { ...GRPC_ROUTE, reason: 'grpc_14' });
  const answers: string[] = [];
  for (let i = 0; i < 100 && bad.seen.length < 10; i++) {
    const a = await call('/pkg.Echo/Hello', {}, `call-${i}`);
    answers.push(`${a.status}/${String(a.trailers['grpc-status'] ?? a.headers['grpc-status'])}`);
  }
  t.ok(bad.seen.length >= 10, `the failing endpoint was drawn ${bad.seen.length} times`);
  t.same([...new Set(answers)], ['200/0'], 'every call succeeded: each UNAVAILABLE was retried on the endpoint not tried yet');
  t.equal((await total(routeRetries, { ...GRPC_ROUTE, reason: 'grpc_14' })) - before, bad.seen.length, 'each one a retry in weft_route_retries_total, reason grpc_14');
});

t.test('gRPC statuses not named are not retried, nor any without the annotation, nor a failure after messages', async (t) => {
  // Named: unavailable only. A trailers-only INTERNAL (13) goes to the client as it is.
  const internal = await scripted(t, grpcFailure(13));
  const named = await ruleFront(t, {}, [internal.port], { kind: 'GRPCRoute', annotations: { 'retry.weft.dev/grpc-codes': 'unavailable' } });
  const a = await named.call('/pkg.Echo/Hello', {}, 'x');
  t.equal(a.headers['grpc-status'], '13', 'INTERNAL reached the client');
  t.equal(internal.seen.length, 1, 'tried once');
  // Without the annotation a GRPCRoute rule has no retry at all.
  const unavailable14 = await scripted(t, grpcFailure(14));
  const plainRoute = await ruleFront(t, {}, [unavailable14.port], { kind: 'GRPCRoute' });
  const b = await plainRoute.call('/pkg.Echo/Hello', {}, 'x');
  t.equal(b.headers['grpc-status'], '14', 'UNAVAILABLE reached the client');
  t.equal(unavailable14.seen.length, 1, 'tried once');
  // UNAVAILABLE in trailers after a message: the client has part of the answer, so no retry.
  const late = await scripted(t, (s, n) => {
    if (s.closed) return;
    s.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-attempt': String(n) }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '14' }));
    s.end('partial');
  });
  const lateRoute = await ruleFront(t, {}, [late.port], { kind: 'GRPCRoute', annotations: { 'retry.weft.dev/grpc-codes': '14' } });
  const c = await lateRoute.call('/pkg.Echo/Hello', {}, 'x');
  t.equal(c.trailers['grpc-status'], '14', 'the status in the trailers reached the client');
  t.equal(late.seen.length, 1, 'tried once');
});

t.test('retry on h2c: the body streams to the first attempt as it comes, and a retry gets all of it', async (t) => {
  // The first attempt is answered 503 at its first bytes, while the client still has more to send.
  const b = await scripted(t, (s, n, body) => (n === 1 ? unavailable(s, n) : echo(s, n, body)), { early: (n) => n === 1 });
  const { client } = await ruleFront(t, { retry: { codes: [503], attempts: 1 } }, [b.port]);
  const s = client.request({ ':method': 'POST', ':path': '/pkg.Echo/Stream', 'content-type': 'application/grpc' });
  s.on('error', () => {});
  let head: http2.IncomingHttpHeaders = {};
  let data = '';
  s.on('response', (h) => (head = h));
  s.on('data', (d: Buffer) => (data += d.toString()));
  s.write('first half, ');
  await until(() => b.seen.length === 2);
  t.equal(b.seen[0]?.body, 'first half, ', 'the first attempt got the first half before the body ended');
  t.equal(b.seen.length, 2, 'and was retried before the body ended');
  s.end('second half');
  await new Promise((resolve) => s.once('close', resolve));
  t.equal(head[':status'], 200, 'answered by the second attempt');
  t.equal(head['x-attempt'], '2');
  t.equal((JSON.parse(data) as { body: string }).body, 'first half, second half', 'which got all of the body: what was kept, then the rest');
});

t.test('retry on h2c: when every attempt fails the last answer is the one passed on', async (t) => {
  const bad = await scripted(t, unavailable);
  const { call } = await ruleFront(t, { retry: { codes: [503], attempts: 2, backoff: '20ms' } }, [bad.port]);
  const before = await total(routeRetries, { ...ROUTE, reason: '503' });
  const started = performance.now();
  const a = await call('/x', plain);
  const ms = performance.now() - started;
  t.ok(ms >= 58, `the backoff doubled: 20 ms, then 40 (${Math.round(ms)} ms in all)`);
  t.equal(a.status, 503, 'the status of the last attempt');
  t.equal(a.headers['x-attempt'], '3', 'and its headers: three attempts, the first included');
  t.equal(bad.seen.length, 3);
  t.equal((await total(routeRetries, { ...ROUTE, reason: '503' })) - before, 2, 'two retries counted');
});

t.test('timeouts.backendRequest on h2c: the attempt is cancelled upstream and answered 504, DEADLINE_EXCEEDED to gRPC', async (t) => {
  const slow = await scripted(t, (s) => void setTimeout(() => !s.closed && s.respond({ ':status': 200 }, { endStream: true }), 3000));
  const { call } = await ruleFront(t, { timeouts: { backendRequest: '100ms' } }, [slow.port]);
  const before = await total(routeTimeouts, { ...ROUTE, timeout: 'backend_request' });
  const started = performance.now();
  const a = await call('/x', plain);
  t.equal(a.status, 504, 'a plain h2c request: 504');
  t.ok(performance.now() - started < 1500, `answered at the timeout, not when the backend would have (${Math.round(performance.now() - started)} ms)`);
  const g = await call('/pkg.Echo/Hello');
  t.equal(g.status, 200);
  t.equal(g.headers['grpc-status'], '4', 'a gRPC call: DEADLINE_EXCEEDED');
  await until(() => slow.seen.every((s) => s.rst !== undefined));
  t.same(
    slow.seen.map((s) => s.rst),
    [http2.constants.NGHTTP2_CANCEL, http2.constants.NGHTTP2_CANCEL],
    'the backend saw both attempts cancelled',
  );
  t.equal((await total(routeTimeouts, { ...ROUTE, timeout: 'backend_request' })) - before, 2, 'counted as backend_request timeouts');
});

t.test('timeouts.backendRequest on h2c with a retry: the attempt out of time is tried again', async (t) => {
  const b = await scripted(t, (s, n, body) => (n === 1 ? undefined : echo(s, n, body)));
  const { call } = await ruleFront(t, { timeouts: { backendRequest: '100ms' }, retry: { codes: [503], attempts: 1 } }, [b.port]);
  const before = await total(routeRetries, { ...ROUTE, reason: 'backend_request' });
  const a = await call('/pkg.Echo/Hello', {}, 'again');
  t.equal(a.status, 200);
  t.equal(a.headers['x-attempt'], '2', 'answered by the second attempt');
  t.equal(a.body.body, 'again', 'which got the body');
  t.equal(a.trailers['grpc-status'], '0');
  await until(() => b.seen[0]?.rst !== undefined);
  t.equal(b.seen[0]?.rst, http2.constants.NGHTTP2_CANCEL, 'the first attempt was cancelled');
  t.equal((await total(routeRetries, { ...ROUTE, reason: 'backend_request' })) - before, 1, 'one retry for the timeout');
});

t.test('retry on h2c: a body over 64 KiB is sent once, whole, and not retried; one under it is', async (t) => {
  const bad = await scripted(t, unavailable);
  const { call } = await ruleFront(t, { retry: { codes: [503], attempts: 2 } }, [bad.port]);
  const big = 'b'.repeat(100 * 1024);
  const a = await call('/x', plain, big);
  t.equal(a.status, 503);
  t.equal(bad.seen.length, 1, 'one attempt');
  t.equal(bad.seen[0]?.body.length, big.length, 'with the whole body');
  const small = 's'.repeat(60 * 1024);
  const b = await call('/x', plain, small);
  t.equal(b.status, 503);
  t.same(
    bad.seen.slice(1).map((s) => s.body.length),
    [small.length, small.length, small.length],
    'a body within the bound: three attempts, each with the whole body',
  );
});

t.test('retry on h2c: the retry budget stops retries', async (t) => {
  const bad = await scripted(t, unavailable);
  const { call } = await ruleFront(t, { retry: { codes: [503], attempts: 1 } }, [bad.port]);
  const retried = await total(routeRetries, ROUTE);
  const refused = await total(routeRetriesRefused, ROUTE);
  // The budget (select.ts): 20 % of the requests of the last 10 s plus 10 a second, so 100 to
  // start with; 200 calls that all fail want 200 retries.
  const N = 200;
  for (let i = 0; i < N; i += 20) await Promise.all(Array.from({ length: 20 }, () => call('/x', plain)));
  const r = (await total(routeRetries, ROUTE)) - retried;
  const f = (await total(routeRetriesRefused, ROUTE)) - refused;
  t.equal(r + f, N, `each call retried (${r}) or refused by the budget (${f})`);
  t.ok(r >= 100 && r <= 100 + 0.2 * N, `retries within the budget: ${r}`);
  t.ok(f > 0, 'and some refused');
  t.equal(bad.seen.length, N + r, 'the backend saw the calls and only the retries the budget allowed');
});
