// Passive outlier ejection on the routed path, with real sockets: a Service with one live endpoint
// and one whose port refuses connections. Without ejection about half of the requests (no retry
// rule) would answer 503; with it, the dead endpoint costs exactly `threshold` failed requests and
// is then skipped. An endpoint is never ejected into having nothing to send to.
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import type { Service } from '../../api/agent-sync.ts';
import { registry } from '../metrics.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { RouteProxy } from './proxy.ts';
import { oneRouteState, routeClient } from './test-fixtures.ts';

async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const source = routeClient();

async function setup(t: Test, endpoints: number[]): Promise<{ get: () => Promise<number>; getBody: () => Promise<string>; service: Service }> {
  const { service, store } = oneRouteState(endpoints, 'web');
  const p = { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }), connectTimeoutMs: 2000, idleTimeoutMs: 10_000 };
  const proxy = new RouteProxy({ p, openTunnel: () => Promise.reject(new Error('the backend is not meshed: no tunnel')) });
  const front = net.createServer((down) => proxy.serve(down, source, service, 80, () => down.destroy()));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => front.close());
  const port = (front.address() as net.AddressInfo).port;
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'web.a' }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  const getBody = () =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'web.a' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(`${res.statusCode ?? 0} ${body.trim()}`));
      });
      req.on('error', reject);
      req.end();
    });
  return { get, getBody, service };
}

async function ejectionsCounted(): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'weft_route_endpoint_ejections_total');
  return (m?.values ?? []).reduce((a, v) => a + Number(v.value), 0);
}

t.test('an endpoint that refuses connections costs 3 requests, then is skipped', async (t) => {
  const live = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  live.listen(0, '127.0.0.1');
  await once(live, 'listening');
  t.teardown(() => live.close());
  const { get } = await setup(t, [(live.address() as net.AddressInfo).port, await closedPort()]);
  const before = await ejectionsCounted();
  const codes: number[] = [];
  for (let i = 0; i < 80; i++) codes.push(await get());
  const failed = codes.filter((c) => c !== 200);
  t.same([...new Set(failed)], [503], 'the dead endpoint answered 503 while it was tried');
  t.equal(failed.length, 3, `exactly the threshold's worth of requests failed (${failed.length} of 80), not about half`);
  t.ok(codes.slice(-40).every((c) => c === 200), 'after the ejection every request reached the live endpoint');
  t.equal((await ejectionsCounted()) - before, 1, 'the ejection was counted once');
});

t.test('when every endpoint is ejected they are all still tried: ejection never empties a backend', async (t) => {
  const { getBody } = await setup(t, [await closedPort(), await closedPort()]);
  const answers: string[] = [];
  for (let i = 0; i < 12; i++) answers.push(await getBody());
  t.same([...new Set(answers)], ['503 connect'], 'every request was attempted (a failed connect), none refused for lack of an endpoint');
});
