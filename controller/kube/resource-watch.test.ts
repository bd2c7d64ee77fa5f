// A watch of an optional CRD on a cluster that does not have it: the list answers 404 until the
// CRD is installed. An optional watch says so once, at info, keeps checking, and syncs once the
// resource is served; a required one warns on every retry. The watch itself goes to a local HTTP
// server that holds it open, as an API server does.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type net from 'node:net';
import t, { type Test } from 'tap';
import { ApiException, KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { createLogger } from '../../api/log.ts';
import { watchResource } from './resource-watch.ts';

async function watchServer(t: Test): Promise<KubeConfig> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    req.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, skipTLSVerify: true }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
  return kc;
}

async function run(t: Test, optional: boolean): Promise<{ lines: { level: string; msg: string }[]; lists: number }> {
  const kubeConfig = await watchServer(t);
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger({}, { write: (l) => void lines.push(JSON.parse(l) as { level: string; msg: string }) });
  let lists = 0;
  const w = watchResource<KubernetesObject>({
    kubeConfig,
    log,
    resource: 'xbackendtrafficpolicies',
    path: '/apis/gateway.networking.x-k8s.io/v1alpha1/xbackendtrafficpolicies',
    backoff: { initialMs: 10, maxMs: 20 },
    optional,
    list: async () => {
      // The CRD appears after the fourth check.
      if (++lists <= 4) throw new ApiException(404, 'Not Found', { kind: 'Status', code: 404, reason: 'NotFound' }, {});
      return { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '1' }, items: [] };
    },
  });
  t.teardown(() => w.stop());
  w.start();
  await Promise.race([w.whenSynced, new Promise((r) => setTimeout(r, 5000))]);
  t.ok(w.synced(), `synced once the resource is served (${lines.length} log lines)`);
  return { lines, lists };
}

t.test('optional: one info line while the CRD is absent, no warnings', async (t) => {
  const { lines, lists } = await run(t, true);
  t.ok(lists >= 5, `kept checking (${lists} lists)`);
  t.same(
    lines.filter((l) => l.level !== 'info' || /not served/.test(l.msg)).map((l) => `${l.level} ${l.msg}`),
    ['info resource not served (its CRD is not installed); checking again quietly'],
    'one line says the resource is absent; nothing warns',
  );
});

t.test('required: a warning on every failed attempt', async (t) => {
  const { lines } = await run(t, false);
  t.equal(lines.filter((l) => l.level === 'warn' && l.msg === 'watch failed; restarting').length, 4, 'one warning per 404');
});
