// End to end: the playground is a real Kubernetes cluster whose pods talk over real networks.
// Everything goes through the `weft dev` CLI and kubectl, as a user would drive it.
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { Playground, pod, sh, uniqueName } from './helpers/playground.ts';

const pg = new Playground(uniqueName('pg'));
const ns = 'e2e';

async function leftovers(name: string): Promise<string[]> {
  const found: string[] = [];
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(`wpg-${name}-`)) : [];
  found.push(...netns.map((n) => `netns ${n}`));
  if ((await sh('ip', ['link', 'show', `wpg-${name}`])).code === 0) found.push(`link wpg-${name}`);
  if (existsSync(`/run/weft-playground/${name}`)) found.push(`dir /run/weft-playground/${name}`);
  const procs = await sh('pgrep', ['-f', `/run/weft-playground/${name}/`]);
  if (procs.stdout.trim()) found.push(`processes ${procs.stdout.trim().split('\n').join(',')}`);
  return found;
}

t.teardown(async () => {
  await pg.down();
});

t.test('a 2-node playground comes up with Ready nodes', async (t) => {
  const r = await pg.up(2, ['--no-mesh']);
  t.equal(r.code, 0, `weft dev up succeeds: ${r.stderr}`);
  const s = await pg.status();
  t.equal(s.phase, 'ready');
  t.equal(s.nodes.length, 2);
  t.ok(s.nodes.every((n) => n.ready), 'both nodes are Ready in the API');
  t.ok(existsSync(s.kubeconfig), 'the kubeconfig exists');
  t.ok(s.kubectl.endsWith('/kubectl') && existsSync(s.kubectl), 'status names a kubectl');
  t.comment(`up in ${s.upSeconds} s`);
  const nodes = await pg.kubectl(['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}']);
  t.match(nodes.stdout, /node-1=True/);
  t.match(nodes.stdout, /node-2=True/);
});

t.test('pods on different nodes reach each other by pod IP and through a Service', async (t) => {
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await pg.apply(pod(ns, 'server', ['python3', '-m', 'http.server', '8080'], { node: 'node-1', port: 8080 }));
  await pg.apply(pod(ns, 'client', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'server', namespace: ns },
    spec: { selector: { app: 'server' }, ports: [{ port: 80, targetPort: 8080, name: 'http' }] },
  });
  await pg.waitReady(ns, ['server', 'client']);

  const s = await pg.status();
  const server = s.pods.find((p) => p.namespace === ns && p.name === 'server');
  const client = s.pods.find((p) => p.namespace === ns && p.name === 'client');
  t.equal(server?.node, 'node-1');
  t.equal(client?.node, 'node-2');
  t.ok(server?.ip && server.ip.length > 0, 'the server has a pod IP');
  t.ok(s.nodes[0] && server?.ip.startsWith(s.nodes[0].podCIDR.split('.').slice(0, 3).join('.')), 'the IP is in node-1 pod CIDR');
  t.ok(server?.netns && existsSync(`/run/netns/${server.netns}`), 'status names the pod network namespace');

  const direct = await pg.exec(`${ns}/client`, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '5', `http://${server?.ip}:8080/`]);
  t.equal(direct.stdout, '200', `client on node-2 reaches the server on node-1 by pod IP ${direct.stderr}`);

  const svcIP = (await pg.kubectl(['-n', ns, 'get', 'svc', 'server', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  t.match(svcIP, /^\d+\.\d+\.\d+\.\d+$/);
  let viaService = '';
  // kube-proxy programs the Service once its EndpointSlice arrives: give it a moment.
  for (let i = 0; i < 30 && viaService !== '200'; i++) {
    viaService = (await pg.exec(`${ns}/client`, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '2', `http://${svcIP}/`])).stdout;
    if (viaService !== '200') await new Promise((r) => setTimeout(r, 500));
  }
  t.equal(viaService, '200', 'the client reaches the server through the ClusterIP (real kube-proxy, nftables)');

  const slices = await pg.kubectl(['-n', ns, 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=server', '-o', 'jsonpath={.items[*].endpoints[*].addresses[*]}']);
  t.equal(slices.stdout.trim(), server?.ip, 'the controller-manager published an EndpointSlice with the server pod');
});

t.test('a Deployment is scheduled and its pods run', async (t) => {
  await pg.apply({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: ns },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'web', image: 'informational', command: ['python3', '-m', 'http.server', '9090'], readinessProbe: { httpGet: { path: '/', port: 9090 }, periodSeconds: 1 } }],
        },
      },
    },
  });
  await pg.waitReady(ns, ['-l', 'app=web']);
  const s = await pg.status();
  const web = s.pods.filter((p) => p.namespace === ns && p.name.startsWith('web-'));
  t.equal(web.length, 3, 'three replicas exist');
  t.ok(web.every((p) => p.phase === 'Running' && p.ip !== ''), 'all are Running with an IP');
  t.ok(web.every((p) => p.node === 'node-1' || p.node === 'node-2'), 'the scheduler bound them to nodes');
});

t.test('deleting a pod runs CNI DEL and removes its network namespace', async (t) => {
  const before = (await pg.status()).pods.find((p) => p.namespace === ns && p.name === 'client');
  t.ok(before?.netns, 'the pod has a namespace');
  const ipamDir = `/run/weft-playground/${pg.name}/nodes/${before?.node}/ipam/playground`;
  t.ok(existsSync(`${ipamDir}/${before?.ip}`), 'host-local holds a lease for the pod IP');
  const r = await pg.kubectl(['-n', ns, 'delete', 'pod', 'client', '--wait=true', '--timeout=60s'], undefined, 70_000);
  t.equal(r.code, 0, r.stderr);
  t.notOk(existsSync(`/run/netns/${before?.netns}`), 'the pod network namespace is gone');
  t.notOk(existsSync(`${ipamDir}/${before?.ip}`), 'CNI DEL released the IP');
});

t.test('a playground name is used once; another name runs beside it', async (t) => {
  const again = await pg.up(1, ['--no-mesh']);
  t.not(again.code, 0, 'a second playground with the same name is refused');
  t.match(again.stderr, /already running/);

  const other = new Playground(uniqueName('pb'));
  t.teardown(() => other.down().then(() => undefined));
  const r = await other.up(1, ['--no-mesh']);
  t.equal(r.code, 0, `a playground with another name starts beside the first: ${r.stderr}`);
  const a = await pg.status();
  const b = await other.status();
  t.not(a.nodes[0]?.ip, b.nodes[0]?.ip, 'they use different addresses');
  t.equal(b.nodes.length, 1);
  t.ok(b.nodes[0]?.ready);
  await other.down();
  t.same(await leftovers(other.name), [], 'the second playground left nothing behind');
  t.equal((await pg.status()).phase, 'ready', 'the first one is unaffected');
});

t.test('weft dev down leaves nothing behind', async (t) => {
  const r = await pg.down();
  t.equal(r.code, 0, r.stderr);
  t.same(await leftovers(pg.name), [], 'no namespaces, links, directories or processes remain');
});
