// `weft route check`'s pure part on hand-made Kubernetes objects shaped as the API returns them:
// the controller's compile step, the agent's route table and matcher decide; these tests prove the
// check follows the client agent's path (producer vs consumer routes, precedence, filters,
// weights, refused routes) and explains it.
import t from 'tap';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { RouteObject } from '../controller/route/compile.ts';
import { ROUTE_EXIT, explainRouteCheck, formatRouteCheck, parseRouteCheckArgs, routeExitCode, type RouteObjects } from './route-check.ts';

function service(ns: string, name: string, ip: string, ports = [80]): V1Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name }, spec: { clusterIP: ip, clusterIPs: [ip], selector: { app: name }, ports: ports.map((port) => ({ name: `http-${port}`, port, targetPort: 8080, protocol: 'TCP' })) } };
}

function slice(ns: string, svc: string, ips: string[], ports = [80]): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name: `${svc}-x`, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: ports.map((port) => ({ name: `http-${port}`, port: 8080, protocol: 'TCP' })),
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
  };
}

let n = 0;
function route(ns: string, name: string, spec: RouteObject['spec']): RouteObject {
  return { metadata: { namespace: ns, name, generation: 1, creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, n++)).toISOString() }, spec };
}

const services = [service('shop', 'web', '10.96.0.10'), service('shop', 'v1', '10.96.0.11'), service('shop', 'v2', '10.96.0.12'), service('shop', 'empty', '10.96.0.13'), service('other', 'api', '10.96.1.10')];
const endpointSlices = [slice('shop', 'web', ['10.200.1.1']), slice('shop', 'v1', ['10.200.1.2', '10.200.1.3']), slice('shop', 'v2', ['10.200.1.4']), slice('other', 'api', ['10.200.2.1'])];
const parent = { group: '', kind: 'Service', name: 'web', port: 80 };

const producer = route('shop', 'split', {
  parentRefs: [parent],
  rules: [
    { name: 'canary-header', matches: [{ headers: [{ name: 'X-Canary', value: 'yes' }] }], backendRefs: [{ name: 'v2', port: 80 }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }], backendRefs: [{ name: 'v1', port: 80 }] },
    { matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [{ name: 'empty', port: 80 }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'v1', port: 80, weight: 90 }, { name: 'v2', port: 80, weight: 10 }], timeouts: { request: '2s' }, retry: { codes: [503], attempts: 2, backoff: '25ms' } },
  ],
});
const consumer = route('other', 'mine', { parentRefs: [{ ...parent, namespace: 'shop' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/x' } }], backendRefs: [{ name: 'v2', namespace: 'shop', port: 80 }] }] });
const extension = route('shop', 'extended', { parentRefs: [parent], rules: [{ filters: [{ type: 'ExtensionRef' }], backendRefs: [{ name: 'v1', port: 80 }] }] });

function check(from: string, url: string, o: { method?: string; headers?: [string, string][]; routes?: RouteObject[] } = {}) {
  const objects: RouteObjects = { services, endpointSlices, httpRoutes: o.routes ?? [producer, consumer] };
  return explainRouteCheck(objects, { from, url, method: o.method ?? 'GET', headers: o.headers ?? [] });
}

t.test('the catch-all rule: weights as shares, ready endpoints, timeouts and retry', async (t) => {
  const c = check('shop', 'http://web.shop/cart?id=1');
  t.equal(c.outcome, 'routed');
  t.equal(c.service, 'shop/web');
  t.same(c.routes, { kind: 'producer', keys: ['HTTPRoute/shop/split'] });
  t.equal(c.route, 'HTTPRoute/shop/split');
  t.equal(c.rule, '4', 'an unnamed rule is its index');
  t.same(
    c.backends.map((b) => [b.backend, b.share, b.readyEndpoints]),
    [
      ['shop/v1:80', 90, 2],
      ['shop/v2:80', 10, 1],
    ],
  );
  t.same(c.timeouts, { requestMs: 2000 });
  t.same(c.retry, { codes: [503], attempts: 3, backoffMs: 25 });
  t.same(c.upstream, { path: '/cart?id=1' });
  t.equal(routeExitCode(c), ROUTE_EXIT.ok);
  t.match(formatRouteCheck(c), /ROUTED {2}shop\/web:80[\s\S]*backend: {2}shop\/v1:80 {2}weight 90 \(90 %\), 2 ready endpoint/);
});

t.test("retry budgets: an XBackendTrafficPolicy's for the backend it targets, the rule's own for the others", async (t) => {
  const policy = { metadata: { name: 'tight', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'v2' }], retryConstraint: { budget: { percent: 5, interval: '30s' } } } };
  const objects: RouteObjects = { services, endpointSlices, httpRoutes: [producer, consumer], backendPolicies: [policy] };
  const c = explainRouteCheck(objects, { from: 'shop', url: 'http://web.shop/cart', method: 'GET', headers: [] });
  t.same(
    c.backends.map((b) => [b.backend, b.retryBudget?.policy, b.retryBudget?.percent]),
    [
      ['shop/v1:80', undefined, undefined],
      ['shop/v2:80', 'shop/tight', 5],
    ],
  );
  const text = formatRouteCheck(c);
  t.match(text, /budget: {3}shop\/v1:80: this rule's own: 20 % of its requests in 10 s \+ 10 per s/);
  t.match(text, /budget: {3}shop\/v2:80: 5 % of its requests in 30 s \+ 10 per 1 s \(XBackendTrafficPolicy shop\/tight\), shared by every route to it; beyond it, 503/);
});

t.test('a header match takes precedence over the prefix, by the agent\'s own precedence', async (t) => {
  const c = check('shop', 'http://10.96.0.10/anything', { headers: [['x-canary', 'yes']] });
  t.equal(c.service, 'shop/web', 'the cluster IP names the Service');
  t.equal(c.rule, 'canary-header');
  t.match(c.match, /header x-canary Exact yes/);
  t.same(c.backends.map((b) => b.backend), ['shop/v2:80']);
});

t.test('a redirect answers; a rewrite shows the upstream path', async (t) => {
  const r = check('shop', 'http://web/old/page?q=1');
  t.equal(r.outcome, 'redirect');
  t.same(r.redirect, { status: 301, location: 'http://web/new/page?q=1' });
  t.equal(routeExitCode(r), ROUTE_EXIT.ok);
  const w = check('shop', 'http://web.shop.svc.cluster.local:80/api/v1/items');
  t.equal(w.outcome, 'routed');
  t.same(w.upstream, { path: '/v1/items' });
  t.match(w.filters[0], /URLRewrite/);
});

t.test('consumer routes replace the producer\'s for their namespace only; no match is 404', async (t) => {
  const mine = check('other', 'http://web.shop/x/1');
  t.same(mine.routes, { kind: 'consumer', keys: ['HTTPRoute/other/mine'] });
  t.same(mine.backends.map((b) => b.backend), ['shop/v2:80']);
  const miss = check('other', 'http://web.shop/cart');
  t.equal(miss.outcome, 'no-match', 'the producer\'s catch-all does not apply to a namespace with its own route');
  t.equal(routeExitCode(miss), ROUTE_EXIT.refused);
  const third = check('elsewhere', 'http://web.shop/x/1');
  t.same(third.routes?.kind, 'producer');
  t.equal(third.rule, '4');
});

t.test('no route: L4; no Service; no ready endpoint; a refused route is named', async (t) => {
  const l4 = check('shop', 'http://api.other/');
  t.equal(l4.outcome, 'unrouted');
  t.equal(routeExitCode(l4), ROUTE_EXIT.ok);
  const none = check('shop', 'http://nosuch.shop/');
  t.equal(none.outcome, 'no-service');
  t.equal(routeExitCode(none), ROUTE_EXIT.refused);
  const empty = check('shop', 'http://web.shop/only');
  t.match(empty.notes.join('\n'), /shop\/empty:80 has no ready endpoint: its share answers 503/);
  const refused = check('shop', 'http://web.shop/', { routes: [extension] });
  t.equal(refused.outcome, 'unrouted', 'a route the controller refuses is not applied at all');
  t.match(refused.refused[0], /HTTPRoute\/shop\/extended: UnsupportedValue: .*ExtensionRef/);
  t.match(formatRouteCheck(refused), /not applied: HTTPRoute\/shop\/extended/);
});

t.test('gRPC calls: GRPCRoutes and HTTPRoutes together, as the agent matches a call; mirrors listed', async (t) => {
  const grpcRoute = route('shop', 'rpc', {
    parentRefs: [parent],
    rules: [
      { name: 'echo', matches: [{ method: { service: 'pkg.Echo', method: 'Hello' } }] as never, filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'v2', port: 80 }, percent: 25 } }] as never, backendRefs: [{ name: 'v2', port: 80 }] },
    ],
  });
  const objects = (httpRoutes: RouteObject[]): RouteObjects => ({ services, endpointSlices, httpRoutes, grpcRoutes: [grpcRoute] });
  const call = explainRouteCheck(objects([]), { from: 'shop', url: 'grpc://web.shop:80/pkg.Echo/Hello', method: 'GET', headers: [] });
  t.equal(call.grpc, true);
  t.equal(call.outcome, 'routed');
  t.equal(call.route, 'GRPCRoute/shop/rpc');
  t.equal(call.rule, 'echo');
  t.same(call.backends.map((b) => b.backend), ['shop/v2:80']);
  t.same(call.mirrors, [{ backend: 'shop/v2:80', percent: 25, readyEndpoints: 1 }]);
  t.match(formatRouteCheck(call), /mirror: {3}a copy of 25 % to shop\/v2:80/);
  t.match(formatRouteCheck(call), /\(gRPC call\)/);
  const other = explainRouteCheck(objects([]), { from: 'shop', url: 'grpc://web.shop:80/pkg.Echo/Bye', method: 'GET', headers: [] });
  t.equal(other.outcome, 'no-match', 'another method: no rule, 404 (UNIMPLEMENTED for the client)');
  const plain = explainRouteCheck(objects([]), { from: 'shop', url: 'http://web.shop/pkg.Echo/Hello', method: 'POST', headers: [] });
  t.equal(plain.outcome, 'unrouted', 'not a gRPC call: GRPCRoutes do not take it');
  t.match(plain.notes.join(' '), /only GRPCRoutes apply/);
  const byHeader = explainRouteCheck(objects([]), { from: 'shop', url: 'http://web.shop/pkg.Echo/Hello', method: 'POST', headers: [['Content-Type', 'application/grpc+proto']] });
  t.equal(byHeader.route, 'GRPCRoute/shop/rpc', 'an http:// URL with a gRPC content-type is a gRPC call');
  const both = explainRouteCheck(objects([producer]), { from: 'shop', url: 'grpc://web.shop:80/pkg.Echo/Hello', method: 'GET', headers: [] });
  t.equal(both.route, 'GRPCRoute/shop/rpc', 'the exact method match beats the HTTPRoute catch-all prefix');
  t.throws(() => explainRouteCheck(objects([]), { from: 'shop', url: 'grpc://web.shop/pkg.Echo/Hello', method: 'GET', headers: [] }), /grpc:\/\/<service>/, 'a gRPC URL needs a port');
});

t.test('arguments', async (t) => {
  const a = parseRouteCheckArgs(['shop/client-1', 'http://web.shop/x', '-H', 'X-A: 1', '--method', 'post', '-o', 'json', '--name', 'pg']);
  t.same(a.question, { from: 'shop', url: 'http://web.shop/x', method: 'post', headers: [['X-A', '1']] });
  t.equal(a.output, 'json');
  t.equal(a.playground, 'pg');
  for (const bad of [['shop'], ['Shop!', 'http://x/'], ['shop', 'http://x/', '-H', 'nocolon'], ['shop', 'http://x/', '-o', 'yaml']]) t.throws(() => parseRouteCheckArgs(bad), { code: 'USAGE' }, bad.join(' '));
  t.throws(() => check('shop', 'https://web.shop/'), /only http:\/\//);
});
