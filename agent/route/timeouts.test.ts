// timeouts.backendRequest on the routed HTTP/1.1 path, with real sockets: an attempt whose answer
// is late is cut, answered 504 and counted. The count once carried labels its counter does not
// have, and prom-client throws on those: the throw came from a timer, so the first late answer
// on such a route ended the agent, and with it every connection of the node.
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import net from 'node:net';
import t from 'tap';
import { registry } from '../metrics.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { RouteProxy } from './proxy.ts';
import { oneRouteState, routeClient } from './test-fixtures.ts';

async function timeoutsCounted(): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'weft_route_timeouts_total');
  return (m?.values ?? []).filter((v) => v.labels.timeout === 'backend_request' && v.labels.route === 'HTTPRoute/a/late').reduce((a, v) => a + Number(v.value), 0);
}

t.test('a late backend answer is cut at timeouts.backendRequest: 504, counted, and the process lives on', async (t) => {
  const late = createServer((req, res) => {
    req.resume();
    const timer = setTimeout(() => res.end('too late'), 5_000);
    res.on('close', () => clearTimeout(timer));
  });
  late.listen(0, '127.0.0.1');
  await once(late, 'listening');
  t.teardown(() => late.close());

  const { service, route, store } = oneRouteState([(late.address() as net.AddressInfo).port], 'late');
  (route.rules[0] as (typeof route.rules)[number]).timeouts = { backendRequestMs: 150 };
  store.apply({ type: 'delta', epoch: 'e1', revision: 2, base: 1, upserts: [{ kind: 'Route', value: { ...route, generation: 2 } }], removes: [] });
  const p = { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }), connectTimeoutMs: 2000, idleTimeoutMs: 10_000 };
  const proxy = new RouteProxy({ p, openTunnel: () => Promise.reject(new Error('the backend is not meshed: no tunnel')) });
  const source = routeClient();
  const front = net.createServer((down) => proxy.serve(down, source, service, 80, () => down.destroy()));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => front.close());

  const before = await timeoutsCounted();
  const started = performance.now();
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, path: '/', headers: { host: 'web.a' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
  const ms = performance.now() - started;
  t.equal(status, 504, 'answered 504');
  t.ok(ms < 3_000, `at the timeout, not when the backend answered (${Math.round(ms)} ms)`);
  t.equal((await timeoutsCounted()) - before, 1, 'counted once as a backend_request timeout');
});
