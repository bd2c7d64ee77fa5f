// End to end: the node's own traffic to a meshed pod (node processes, and hostNetwork pods, which
// share the node's network namespace) is captured like any plaintext client, so that STRICT and
// AccessPolicy apply to it, while the kubelet's probes still make the pod Ready. And IPv6, which
// Weft does not capture, is closed: an address added by hand to a meshed pod is unreachable.
import t from 'tap';
import { dirname, join } from 'node:path';
import { Playground, REPO, eventually, pod, sh, uniqueName, type DevStatusJson, type Result } from './helpers/playground.ts';

const pg = new Playground(uniqueName('nt'));
t.teardown(async () => {
  await pg.down();
});

const MESHED = 'nt-mesh';
const PLAIN = 'nt-plain';
let status: DevStatusJson;
let serverIP = '';
let clusterIP = '';
let nodeNetns = '';
const podOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name);

const accessPolicy = (name: string, spec: object) => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace: MESHED }, spec });
const meshTLSPolicy = (name: string, spec: object) => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'MeshTLSPolicy', metadata: { name, namespace: MESHED }, spec });

/** Runs a command as a process of node-1 (a hostNetwork pod runs exactly there). */
function onNode(cmd: string[], timeoutMs = 10_000): Promise<Result> {
  return sh('ip', ['netns', 'exec', nodeNetns, ...cmd], { timeoutMs });
}

/** The HTTP status from the node to the server's :8080 (or another address), or `refused`. */
async function http(path = '/', host = serverIP, port = 8080): Promise<string> {
  const r = await onNode(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3', `http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`]);
  const code = r.stdout.trim();
  return code === '' || code === '000' ? 'refused' : code;
}

/** `ok` when the TCP echo on :9000 answered the node, else why not. */
async function tcp(host = serverIP): Promise<string> {
  const address = host.includes(':') ? `TCP6:[${host}]:9000` : `TCP4:${host}:9000`;
  const r = await onNode(['sh', '-c', `echo weft-ping | socat -T2 - ${address},connect-timeout=3`]);
  return r.stdout.includes('weft-ping') ? 'ok' : r.stderr.includes('refused') ? 'refused' : `failed: ${r.stderr.trim()}`;
}

async function ready(): Promise<string> {
  const r = await pg.kubectl(['-n', MESHED, 'get', 'pod', 'server', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  return r.stdout.trim();
}

/** Applies a policy and waits until its status says it is in force on the current generation. */
async function enforce(manifest: { kind: string; metadata: { name: string } }): Promise<void> {
  await pg.apply(manifest);
  const kind = manifest.kind === 'AccessPolicy' ? 'accesspolicy' : 'meshtlspolicy';
  const state = () =>
    pg
      .kubectl(['-n', MESHED, 'get', kind, manifest.metadata.name, '-o', 'json'])
      .then((r) => JSON.parse(r.stdout) as { metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] } })
      .then((p) => String(p.status?.observedGeneration === p.metadata.generation && p.status.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True')));
  if ((await eventually(state, 'true', 20_000)) !== 'true') throw new Error(`${kind} ${manifest.metadata.name} not programmed`);
}

async function removePolicies(): Promise<void> {
  await pg.kubectl(['-n', MESHED, 'delete', 'accesspolicies,meshtlspolicies', '--all', '--wait=true']);
  await new Promise((r) => setTimeout(r, 1000)); // the agents drop them (no status left to watch)
}

/** Gives a pod an IPv6 address by hand, as a dual-stack CNI (or an attacker in the pod) could. */
async function addIPv6(ns: string, name: string, prefix: string): Promise<string> {
  const p = podOf(ns, name);
  if (!p) throw new Error(`no pod ${ns}/${name}`);
  const route = JSON.parse((await onNode(['ip', '-j', 'route', 'get', p.ip])).stdout) as { dev: string }[];
  const hostIf = route[0]?.dev ?? '';
  for (const cmd of [
    ['nsenter', `--net=${p.netnsPath}`, '--', 'ip', '-6', 'addr', 'add', `${prefix}::2/64`, 'dev', 'eth0', 'nodad'],
    ['ip', 'netns', 'exec', nodeNetns, 'ip', '-6', 'addr', 'add', `${prefix}::1/64`, 'dev', hostIf, 'nodad'],
  ]) {
    const r = await sh(cmd[0] as string, cmd.slice(1));
    if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  }
  return `${prefix}::2`;
}

function server(ns: string): object {
  const p = pod(ns, 'server', [process.execPath, join(REPO, 'tests/helpers/policy-server.ts')], { node: 'node-1', labels: { app: 'server' } }) as { spec: { containers: Record<string, unknown>[] } };
  const c = p.spec.containers[0] as Record<string, unknown>;
  c.ports = [
    { name: 'web', containerPort: 8080 },
    { name: 'echo', containerPort: 9000 },
  ];
  // Probed on the echo port, by name: the agent must resolve it to exempt 9000, and only 9000.
  c.readinessProbe = { tcpSocket: { port: 'echo' }, periodSeconds: 1, failureThreshold: 2 };
  return p;
}

t.before(async () => {
  status = await pg.start(2);
  nodeNetns = status.nodes.find((n) => n.name === 'node-1')?.netns ?? '';
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: MESHED, labels: { 'weft.dev/mesh': 'enabled' } } });
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: PLAIN } });
  await pg.apply(server(MESHED));
  await pg.apply(server(PLAIN));
  // appProtocol http makes 8080 an HTTP port, so that path rules apply to it.
  await pg.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'server', namespace: MESHED }, spec: { selector: { app: 'server' }, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] } });
  await pg.waitReady(MESHED, ['--all']);
  await pg.waitReady(PLAIN, ['--all']);
  status = await pg.status();
  serverIP = podOf(MESHED, 'server')?.ip ?? '';
  if (!podOf(MESHED, 'server')?.meshed) throw new Error('the server is not meshed');
  clusterIP = (await pg.kubectl(['-n', MESHED, 'get', 'service', 'server', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  await new Promise((r) => setTimeout(r, 1000)); // the Service's endpoints reach the agents
});

t.test('PERMISSIVE and no policy: the node still reaches the meshed pod', async (t) => {
  t.equal(await http('/'), '200', 'HTTP');
  t.equal(await tcp(), 'ok', 'TCP on the probed port');
  t.equal(await http('/', clusterIP, 80), '200', 'through its Service');
});

t.test('a DENY AccessPolicy applies to the node, down to the HTTP path', async (t) => {
  await enforce(accessPolicy('deny-admin', { action: 'DENY', rules: [{ to: [{ ports: [8080], paths: ['/admin/*'] }] }] }));
  t.equal(await http('/admin/keys'), '403', 'a denied path is refused to the node');
  t.equal(await http('/public'), '200', 'another path is allowed');
  t.equal(await http('/admin/keys', clusterIP, 80), '403', 'through the Service too (kube-proxy translates it after the capture)');
  await enforce(accessPolicy('deny-admin', { action: 'DENY', rules: [{ to: [{ ports: [8080] }] }] }));
  t.equal(await http('/'), 'refused', 'a denied port is refused to the node');
  await new Promise((r) => setTimeout(r, 3000)); // > failureThreshold × periodSeconds
  t.equal(await ready(), 'True', 'the pod stays Ready');
  await removePolicies();
});

t.test('STRICT refuses the node; the kubelet probe still makes the pod Ready', async (t) => {
  await enforce(meshTLSPolicy('strict', { mode: 'STRICT' }));
  t.equal(await http('/'), 'refused', 'plaintext from the node is refused');
  t.equal(await http('/', clusterIP, 80), 'refused', 'through the Service too');
  // Delete and recreate the pod: it must become Ready under STRICT from scratch.
  await pg.kubectl(['-n', MESHED, 'delete', 'pod', 'server', '--wait=true']);
  await pg.apply(server(MESHED));
  await pg.waitReady(MESHED, ['--all'], 60);
  status = await pg.status();
  serverIP = podOf(MESHED, 'server')?.ip ?? '';
  t.equal(await ready(), 'True', 'a new pod becomes Ready under STRICT: its probe port is exempt');
  t.equal(await http('/'), 'refused', 'and the node is refused on every other port');
  t.equal(await tcp(), 'ok', 'the probed port is the one way in (docs/policy.md says so)');
  await removePolicies();
});

t.test('IPv6 added by hand to a meshed pod cannot be reached from outside the mesh', async (t) => {
  const plain6 = await addIPv6(PLAIN, 'server', 'fd77:2');
  t.equal(await tcp(plain6), 'ok', 'control: the same by-hand IPv6 on a pod outside the mesh works');
  const meshed6 = await addIPv6(MESHED, 'server', 'fd77:1');
  t.equal(await tcp(meshed6), 'refused', 'the meshed pod over IPv6: reset, never a bypass');
  t.equal(await http('/', meshed6), 'refused', 'HTTP too');
});

t.test('agent.captureNodeTraffic=false trusts the node again (the opt-out, and the control)', async (t) => {
  await enforce(meshTLSPolicy('strict', { mode: 'STRICT' }));
  t.equal(await http('/'), 'refused', 'captured: refused under STRICT');
  const helm = join(dirname(status.kubectl), 'helm');
  const r = await sh('env', [`KUBECONFIG=${status.kubeconfig}`, helm, 'upgrade', 'weft', join(REPO, 'helm/weft'), '-n', 'weft-system', '--reuse-values', '--set', 'agent.captureNodeTraffic=false', '--set', 'agent.drainSeconds=5'], { timeoutMs: 180_000 });
  t.equal(r.code, 0, `helm upgrade: ${r.stderr.trim()}`);
  t.equal(await eventually(() => http('/'), '200', 120_000), '200', 'once node-1 runs the new agent, the node reaches the pod past STRICT');
  t.equal(await http('/', clusterIP, 80), '200', 'and through its Service');
  t.equal(await tcp(`fd77:1::2`), 'ok', 'IPv6 from the trusted node too');
  await removePolicies();
});
