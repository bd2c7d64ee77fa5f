// The retry budget of an XBackendTrafficPolicy on the routed paths, with real sockets: one budget
// per backend Service, shared by every rule that sends to it, with the policy's parameters; a
// retry it refuses answers 503 (the Gateway API's word for it), on HTTP/1.1 and on h2c, and is
// counted as refused. Weft's default budget per rule is select.test.ts and h2.test.ts.
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import http2, { type IncomingHttpHeaders } from 'node:http2';
import type net from 'node:net';
import t, { type Test } from 'tap';
import type { RouteRetryBudget, RouteRule } from '../../api/route.ts';
import { StateStore } from '../state/store.ts';
import { routeRetries, routeRetriesRefused } from './metrics.ts';
import { RetryBudgets } from './retry.ts';
import { h2Front, oneRouteState, routeClient, routeFront } from './test-fixtures.ts';

/** percent 0 and a floor of 1 retry per 10 s: one retry, then none, within a test's time. */
const ONE_RETRY: RouteRetryBudget = { policy: 'a/tight', percent: 0, intervalMs: 10_000, minCount: 1, minIntervalMs: 10_000 };

/** An HTTP/1.1 backend that answers every request 500, counting them. */
async function failing(t: Test): Promise<{ port: number; seen: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    n++;
    req.resume();
    res.writeHead(500).end('broken');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.closeAllConnections() ?? server.close());
  return { port: (server.address() as net.AddressInfo).port, seen: () => n };
}

/** An h2c backend that answers every stream 500, counting them. */
async function failingH2(t: Test): Promise<{ port: number; seen: () => number }> {
  let n = 0;
  const server = http2.createServer();
  server.on('stream', (s) => {
    n++;
    s.resume();
    s.respond({ ':status': 500 }, { endStream: true });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, seen: () => n };
}

/** Two rules (/a and /b) retrying 500 once, both to a/web whose policy budget is `budget`. */
function twoRules(endpoint: number, budget: RouteRetryBudget | undefined, appProtocol = 'http') {
  const base = oneRouteState([endpoint], 'budget');
  const rule = (name: string): RouteRule => ({
    name,
    matches: [{ path: { type: 'PathPrefix', value: `/${name}` }, headers: [], queryParams: [] }],
    filters: [],
    backends: [{ service: 'a/web', port: 80, weight: 1, filters: [], ...(budget ? { retryBudget: budget } : {}) }],
    retry: { codes: [500], attempts: 2, backoffMs: 0 },
  });
  const service = { ...base.service, ports: base.service.ports.map((p) => ({ ...p, appProtocol })) };
  const route = { ...base.route, rules: [rule('a'), rule('b')] };
  const store = new StateStore();
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: service }, { kind: 'Route', value: route }] });
  return { store, service };
}

async function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host: 'web.a' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function total(c: typeof routeRetries | typeof routeRetriesRefused, route: string): Promise<number> {
  const { values } = await c.get();
  return values.filter((v) => v.labels.route === route).reduce((a, v) => a + v.value, 0);
}

const ROUTE = 'HTTPRoute/a/budget';

t.test('HTTP/1.1: the policy budget is shared by the rules to the Service; a refused retry answers 503', async (t) => {
  const b = await failing(t);
  const { store, service } = twoRules(b.port, ONE_RETRY);
  const front = await routeFront(store, routeClient(), service, 80);
  t.teardown(front.close);
  const retried = await total(routeRetries, ROUTE);
  const refused = await total(routeRetriesRefused, ROUTE);
  t.equal(await get(front.port, '/a'), 500, "the first request is retried, and the retry's answer is the client's");
  t.equal(b.seen(), 2, 'two attempts');
  t.equal(await get(front.port, '/b'), 503, "another rule's request to the same Service finds the budget spent: 503");
  t.equal(b.seen(), 3, 'one attempt, not retried');
  t.equal(await get(front.port, '/a'), 503, 'and so does the first rule again');
  t.equal((await total(routeRetries, ROUTE)) - retried, 1, 'one retry counted');
  t.equal((await total(routeRetriesRefused, ROUTE)) - refused, 2, 'two refused by the budget');
});

t.test("HTTP/1.1: without a policy each rule has Weft's default budget (100 retries to start with)", async (t) => {
  const b = await failing(t);
  const { store, service } = twoRules(b.port, undefined);
  const front = await routeFront(store, routeClient(), service, 80);
  t.teardown(front.close);
  for (const path of ['/a', '/b', '/a', '/b']) t.equal(await get(front.port, path), 500, `${path} retried, answered by the retry`);
  t.equal(b.seen(), 8, 'every request was tried twice');
});

t.test('h2c: a retry the policy budget refuses answers 503 (UNAVAILABLE to a gRPC call)', async (t) => {
  const b = await failingH2(t);
  const { store, service } = twoRules(b.port, ONE_RETRY, 'kubernetes.io/h2c');
  const client = await h2Front(t, store, routeClient(), service, 80);
  const call = (path: string, grpc = false) =>
    new Promise<{ status: number; grpcStatus: string | undefined }>((resolve, reject) => {
      const s = client.request({ ':method': 'POST', ':path': path, ':authority': 'web.a', ...(grpc ? { 'content-type': 'application/grpc', te: 'trailers' } : {}) });
      let status = 0;
      let grpcStatus: string | undefined;
      s.on('response', (h) => {
        status = Number(h[':status']);
        grpcStatus = h['grpc-status'] as string | undefined;
      });
      s.on('trailers', (h: IncomingHttpHeaders) => (grpcStatus = (h['grpc-status'] as string | undefined) ?? grpcStatus));
      s.on('error', reject);
      s.resume();
      s.on('end', () => resolve({ status, grpcStatus }));
      s.end();
    });
  t.equal((await call('/a')).status, 500, 'the first call is retried');
  t.equal(b.seen(), 2, 'two attempts');
  t.equal((await call('/b')).status, 503, "the other rule's call finds the budget spent");
  const g = await call('/a/pkg.Svc/M', true);
  t.same(g, { status: 200, grpcStatus: '14' }, 'a gRPC call gets UNAVAILABLE, trailers-only');
  t.equal(b.seen(), 4, 'neither was retried');
});

t.test('RetryBudgets: one per policy and Service, a new one when the policy changes, one per rule without a policy', async (t) => {
  const budgets = new RetryBudgets();
  const labels = (rule: string) => ({ source_workload: 'c', source_workload_namespace: 'a', destination_service: 'a/web', route: ROUTE, rule });
  const retry = { codes: [500], attempts: 2, backoffMs: 0 };
  const backend = (retryBudget?: RouteRetryBudget) => ({ service: 'a/web', port: 80, weight: 1, filters: [], ...(retryBudget ? { retryBudget } : {}) });
  t.equal(budgets.request(labels('a'), undefined, backend(ONE_RETRY)), undefined, 'a rule without retry needs no budget');
  const shared = budgets.request(labels('a'), retry, backend(ONE_RETRY));
  t.equal(budgets.request(labels('b'), retry, backend(ONE_RETRY)), shared, 'rules to the same Service share its policy budget');
  t.not(budgets.request(labels('a'), retry, backend({ ...ONE_RETRY, percent: 50 })), shared, 'a changed policy starts a budget afresh');
  t.not(budgets.request(labels('a'), retry, backend()), shared, 'without a policy, the rule has its own');
  t.not(budgets.request(labels('b'), retry, backend()), budgets.request(labels('a'), retry, backend()), 'one per rule');
  t.equal(budgets.size, 4, 'four budgets kept');
});
