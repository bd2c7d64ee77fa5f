// timeouts.backendRequest with a retry on the routed HTTP/1.1 path, with real sockets: the attempt
// out of time is tried again and the retry counted for its reason (the 504 without a retry:
// timeouts.test.ts; the same on HTTP/2: h2.test.ts).
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import type { RouteRule } from '../../api/route.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { StateStore } from '../state/store.ts';
import { routeRetries, routeTimeouts } from './metrics.ts';
import { RouteProxy } from './proxy.ts';
import { oneRouteState, routeClient } from './test-fixtures.ts';

/** A backend that leaves its first `hang` requests unanswered and answers the rest 200. */
async function backend(t: Test, hang: number): Promise<{ port: number; seen: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    n++;
    req.resume();
    if (n <= hang) return;
    res.end(`answer ${n}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.closeAllConnections() ?? server.close());
  return { port: (server.address() as net.AddressInfo).port, seen: () => n };
}

async function get(t: Test, endpoint: number, rule: Partial<RouteRule>): Promise<{ status: number; body: string }> {
  const base = oneRouteState([endpoint], 'slow');
  const route = { ...base.route, rules: base.route.rules.map((r) => ({ ...r, ...rule })) };
  const store = new StateStore();
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: base.service }, { kind: 'Route', value: route }] });
  const enforcer = new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} });
  const proxy = new RouteProxy({ p: { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer, connectTimeoutMs: 2000, idleTimeoutMs: 10_000 }, openTunnel: () => Promise.reject(new Error('no tunnel')) });
  const front = net.createServer((down) => proxy.serve(down, routeClient(), base.service, 80, () => down.destroy()));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => front.close());
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, path: '/', headers: { host: 'web.a' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function count(c: typeof routeTimeouts | typeof routeRetries, match: Record<string, string>): Promise<number> {
  const { values } = await c.get();
  return values.filter((v) => Object.entries(match).every(([k, x]) => v.labels[k as never] === x)).reduce((a, v) => a + v.value, 0);
}

const L = { route: 'HTTPRoute/a/slow' };

t.test('with a retry, the attempt out of time is tried again', async (t) => {
  const b = await backend(t, 1);
  const before = await count(routeRetries, { ...L, reason: 'backend_request' });
  const timeouts = await count(routeTimeouts, { ...L, timeout: 'backend_request' });
  const r = await get(t, b.port, { timeouts: { backendRequestMs: 100 }, retry: { codes: [503], attempts: 2, backoffMs: 0 } });
  t.equal(r.status, 200);
  t.equal(r.body, 'answer 2', 'answered by the second attempt');
  t.equal((await count(routeRetries, { ...L, reason: 'backend_request' })) - before, 1, 'one retry for the timeout');
  t.equal((await count(routeTimeouts, { ...L, timeout: 'backend_request' })) - timeouts, 1, 'and the timeout counted');
});
