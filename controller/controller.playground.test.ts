// The controller as a process (controller/main.ts) against a real Kubernetes control plane: the
// playground's kube-apiserver, controller-manager, scheduler and simulated kubelet. Agents are
// test clients holding real service-account tokens bound to the real Node, so authentication is
// a real TokenReview, and the state they receive comes from real watches of real Pods, Services
// and EndpointSlices. The controller reaches the API server through a TCP relay the test can cut,
// to prove that watches come back after the API server goes away.
import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { webcrypto } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import type { Service, SignResponse, SyncMessage, Workload } from '../api/agent-sync.ts';
import { Playground, weft } from '../tests/helpers/playground.ts';
import { createLeaderElector } from './kube/leader.ts';
import { createLogger } from '../api/log.ts';
import { ECDSA_P256 } from './ca/root.ts';
import { x509 } from '../api/x509.ts';
import { TestAgent } from './server/test-agent.ts';
import type { SyncStream } from './server/test-agent.ts';

const pg = new Playground(`c${randomBytes(2).toString('hex')}`);
const work = await mkdtemp(join(tmpdir(), 'weft-controller-test-'));
// Filled in as they start, so that teardown stops whatever exists.
const running: { controller?: ChildProcess; relay?: ApiRelay } = {};
const logLines: string[] = [];

t.teardown(async () => {
  const c = running.controller;
  if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  running.relay?.stop();
  await pg.down();
  await rm(work, { recursive: true, force: true });
});

// A bare cluster (--no-mesh): this test starts the controller itself and plays the agents.
const up = await weft(['dev', 'up', '--name', pg.name, '--nodes', '1', '--detach', '--no-mesh', '--runtime', 'simulated'], { timeoutMs: 600_000 });
if (up.code !== 0) {
  t.fail(`weft dev up failed; the rest cannot run: ${up.stderr.slice(-2000)}`);
  await pg.down();
  await rm(work, { recursive: true, force: true });
  process.exit(1);
}
const status = await pg.status();

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await pg.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

// ---- a relay between the controller and the API server, that the test can cut ----------------

class ApiRelay {
  readonly #target: { host: string; port: number };
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async start(port = 0): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.#target.port, this.#target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.#server = server;
    this.port = (server.address() as { port: number }).port;
  }

  /** Refuses new connections and cuts every open one, like an API server going down. */
  stop(): void {
    this.#server?.close();
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
  }
}

const api = new URL(await readApiServer(status.kubeconfig));
const relay = new ApiRelay({ host: api.hostname, port: Number(api.port) });
running.relay = relay;
await relay.start();

async function readApiServer(kubeconfigPath: string): Promise<string> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc.getCurrentCluster()?.server ?? '';
}

// The same credentials, but the server is the relay (the API server's certificate names 127.0.0.1).
const relayed = new KubeConfig();
relayed.loadFromFile(status.kubeconfig);
const cluster = relayed.getCurrentCluster();
relayed.loadFromOptions({
  clusters: relayed.clusters.map((c) => (c.name === cluster?.name ? { ...c, server: `https://127.0.0.1:${relay.port}` } : c)),
  users: relayed.users,
  contexts: relayed.contexts,
  currentContext: relayed.currentContext,
});
const kubeconfig = join(work, 'kubeconfig');
await writeFile(kubeconfig, relayed.exportConfig(), { mode: 0o600 });

// ---- identities: the agents' service account and tokens bound to the Node ----------------------

await kubectl(['create', 'namespace', 'weft-system']);
// The chart's CRDs: the controller watches AccessPolicies and MeshTLSPolicies.
const crds = new URL('../helm/weft/crds', import.meta.url).pathname;
await kubectl(['apply', '-f', crds]);
await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', crds]);
await kubectl(['-n', 'weft-system', 'create', 'serviceaccount', 'weft-agent']);
await kubectl(['-n', 'weft-system', 'create', 'serviceaccount', 'intruder']);
const nodeToken = await kubectl(['create', 'token', 'weft-agent', '-n', 'weft-system', '--bound-object-kind', 'Node', '--bound-object-name', 'node-1']);
const unboundToken = await kubectl(['create', 'token', 'weft-agent', '-n', 'weft-system']);
const intruderToken = await kubectl(['create', 'token', 'intruder', '-n', 'weft-system', '--bound-object-kind', 'Node', '--bound-object-name', 'node-1']);

// ---- the controller process --------------------------------------------------------------------

const bundlePath = join(work, 'trust-bundle.pem');
const controller = spawn(
  process.execPath,
  [new URL('./main.ts', import.meta.url).pathname, '--kubeconfig', kubeconfig, '--dev-ca', '--trust-bundle-out', bundlePath, '--listen', '127.0.0.1:0', '--health-listen', '127.0.0.1:0', '--mtls-mode', 'STRICT'],
  { stdio: ['ignore', 'inherit', 'pipe'] },
);
running.controller = controller;
const started = new Promise<{ agentPort: number; healthPort: number }>((resolve, reject) => {
  const lines = createInterface({ input: controller.stderr });
  lines.on('line', (line) => {
    logLines.push(line);
    if (process.env.WEFT_TEST_LOG === '1') process.stderr.write(`${line}\n`);
    try {
      const entry = JSON.parse(line) as { msg?: string; agentPort?: number; healthPort?: number };
      if (entry.msg === 'controller started') resolve({ agentPort: entry.agentPort ?? 0, healthPort: entry.healthPort ?? 0 });
    } catch {
      // not a log line
    }
  });
  controller.once('exit', (code) => reject(new Error(`controller exited with ${code}: ${logLines.slice(-5).join('\n')}`)));
});
const ports = await started;
const health = `http://127.0.0.1:${ports.healthPort}`;
const bundle = await readFile(bundlePath, 'utf8');

async function get(path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${health}${path}`);
  return { status: res.status, text: await res.text() };
}

async function agent(token?: string): Promise<TestAgent> {
  const a = await TestAgent.connect({ url: `https://127.0.0.1:${ports.agentPort}`, ca: bundle, servername: 'weft-controller.weft-system.svc', ...(token ? { token } : {}) });
  t.teardown(() => a.close());
  return a;
}

/** Applies sync messages the way an agent does, so tests can look at the resulting state. */
class AgentView {
  readonly workloads = new Map<string, Workload>();
  readonly services = new Map<string, Service>();
  epoch = '';
  revision = 0;
  apply(m: SyncMessage): void {
    if (m.type === 'snapshot') {
      this.workloads.clear();
      this.services.clear();
      for (const r of m.resources) (r.kind === 'Workload' ? this.workloads : this.services).set(r.value.key, r.value as never);
    } else {
      for (const r of m.upserts) (r.kind === 'Workload' ? this.workloads : this.services).set(r.value.key, r.value as never);
      for (const r of m.removes) (r.kind === 'Workload' ? this.workloads : this.services).delete(r.key);
    }
    this.epoch = m.epoch;
    this.revision = m.revision;
  }
  /** Reads and ACKs messages until `done` holds. */
  async until(s: SyncStream, done: (v: AgentView) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('the expected state did not arrive');
      const m = await s.next(left);
      this.apply(m);
      s.send({ type: 'ack', epoch: m.epoch, revision: m.revision });
    }
  }
}

t.test('health: live at once, ready once the watches synced, metrics', async (t) => {
  t.equal((await get('/healthz')).status, 200);
  let ready = await get('/readyz');
  for (let i = 0; i < 100 && ready.status !== 200; i++) {
    await sleep(100);
    ready = await get('/readyz');
  }
  t.equal(ready.status, 200, `ready: ${ready.text}`);
  const metrics = (await get('/metrics')).text;
  for (const r of ['pods', 'namespaces', 'services', 'endpointslices', 'accesspolicies', 'meshtlspolicies']) t.match(metrics, new RegExp(`weft_controller_watch_synced\\{resource="${r}"\\} 1`));
  t.match(metrics, /weft_controller_store_revision [1-9]/, 'the store holds the cluster state');
  t.match(metrics, /weft_controller_process_resident_memory_bytes/, 'process metrics too');
});

t.test('a real node-bound token: TokenReview accepts it for its node only', async (t) => {
  const a = await agent(nodeToken);
  const liar = a.sync({ type: 'hello', node: 'node-2', agentVersion: 'test' });
  t.equal(await liar.status, 403);
  t.match(await liar.body(), { error: { code: 'NODE_MISMATCH' } });

  const unbound = (await agent(unboundToken)).sync({ type: 'hello', node: 'node-1', agentVersion: 'test' });
  t.equal(await unbound.status, 403, 'a token of the right service account, bound to nothing');
  t.match(await unbound.body(), { error: { code: 'FORBIDDEN', message: /not bound to a node/ } });

  const intruder = (await agent(intruderToken)).sync({ type: 'hello', node: 'node-1', agentVersion: 'test' });
  t.equal(await intruder.status, 403, 'bound to the node, but not the agent service account');
  t.match(await intruder.body(), { error: { code: 'FORBIDDEN', message: /weft-system:intruder/ } });

  const forged = (await agent(`${nodeToken.slice(0, -4)}AAAA`)).sync({ type: 'hello', node: 'node-1', agentVersion: 'test' });
  t.equal(await forged.status, 401, 'a token with a broken signature');
});

const view = new AgentView();
let stream: SyncStream;

t.test('pods, services and endpoints flow from the API server to the agent', async (t) => {
  stream = (await agent(nodeToken)).sync({ type: 'hello', node: 'node-1', agentVersion: 'test' });
  t.equal(await stream.status, 200);
  const first = await stream.next();
  t.equal(first.type, 'snapshot');
  view.apply(first);
  t.match(first.type === 'snapshot' && first.config, { trustDomain: 'cluster.local', mtlsMode: 'STRICT' }, 'the mesh-wide mode from the flags');

  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } }));
  await kubectl(['-n', 'shop', 'create', 'serviceaccount', 'cart']);
  await kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'cart', namespace: 'shop', labels: { app: 'cart' } },
    spec: {
      nodeName: 'node-1',
      serviceAccountName: 'cart',
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: 'informational', command: ['python3', '-m', 'http.server', '8080'], ports: [{ name: 'web', containerPort: 8080 }], readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 } }],
    },
  }));
  await kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'cart', namespace: 'shop' },
    spec: { selector: { app: 'cart' }, ports: [{ name: 'http-web', port: 80, targetPort: 'web' }] },
  }));
  await pg.waitReady('shop', ['cart']);
  const podIP = await kubectl(['-n', 'shop', 'get', 'pod', 'cart', '-o', 'jsonpath={.status.podIP}']);
  const clusterIP = await kubectl(['-n', 'shop', 'get', 'svc', 'cart', '-o', 'jsonpath={.spec.clusterIP}']);

  await view.until(stream, (v) => v.services.get('shop/cart')?.endpoints.some((e) => e.ready) === true && v.workloads.has('shop/cart'));
  t.match(view.workloads.get('shop/cart'), {
    key: 'shop/cart',
    node: 'node-1',
    ips: [podIP],
    serviceAccount: 'cart',
    identity: 'spiffe://cluster.local/ns/shop/sa/cart',
    meshed: true,
    labels: { app: 'cart' },
  }, 'the pod is a meshed workload (namespace label)');
  t.match(view.services.get('shop/cart'), {
    clusterIPs: [clusterIP],
    ports: [{ name: 'http-web', port: 80, protocol: 'TCP', appProtocol: 'http' }],
    endpoints: [{ ip: podIP, ports: { 'http-web': 8080 }, ready: true, workload: 'shop/cart' }],
  }, 'the Service, with its EndpointSlice merged in');

  await kubectl(['-n', 'shop', 'annotate', 'pod', 'cart', 'weft.dev/mesh=disabled']);
  const before = view.revision;
  await view.until(stream, (v) => v.workloads.get('shop/cart')?.meshed === false);
  t.ok(view.revision > before, 'opting the pod out arrives as a delta');

  // The ACK for that delta travels on the stream while this reads /agents over HTTP: wait for it.
  type AgentRow = { node: string; streams: number; lastAckedRevision?: number };
  let agents: AgentRow[] = [];
  for (let i = 0; i < 50; i++) {
    agents = JSON.parse((await get('/agents')).text) as AgentRow[];
    if (agents[0]?.lastAckedRevision === view.revision) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(agents, [{ node: 'node-1', streams: 1, lastAckedRevision: view.revision }], '/agents shows the ACKed revision');
});

async function csr(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_P256 })).toString('pem');
}

t.test('sign: for service accounts of pods on the agent node only', async (t) => {
  const a = await agent(nodeToken);
  const ok = await a.sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csr() });
  t.equal(ok.status, 200);
  const res = ok.body as SignResponse;
  const leaf = new X509Certificate(res.certChainPem);
  t.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/cart');
  t.ok(leaf.verify(new X509Certificate(bundle).publicKey), 'issued by the root the controller published');
  t.match(await a.sign({ namespace: 'shop', serviceAccount: 'default', csrPem: await csr() }), { status: 403, body: { error: { code: 'NOT_AUTHORIZED_FOR_IDENTITY' } } }, 'no pod runs as shop/default');
  t.match(await a.sign({ namespace: 'kube-system', serviceAccount: 'cart', csrPem: await csr() }), { status: 403 });
  t.match(await (await agent(intruderToken)).sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csr() }), { status: 403, body: { error: { code: 'FORBIDDEN' } } });
  t.match(await (await agent('not-a-token')).sign({ namespace: 'shop', serviceAccount: 'cart', csrPem: await csr() }), { status: 401 });
  t.match((await get('/metrics')).text, /weft_controller_sign_requests_total\{result="signed"\} 1/);
});

t.test('watches come back after the API server goes away', async (t) => {
  relay.stop();
  await kubectl(['-n', 'shop', 'create', 'service', 'clusterip', 'during-outage', '--tcp=81:8080']);
  await sleep(2_000);
  await relay.start(relay.port);
  const started = Date.now();
  await view.until(stream, (v) => v.services.has('shop/during-outage'), 45_000);
  t.pass(`a Service created during a 2 s outage arrived ${Date.now() - started} ms after the API server came back`);
  t.match((await get('/metrics')).text, /weft_controller_watch_restarts_total\{resource="services"\} [1-9]/, 'the restart is counted');
  t.equal(view.workloads.get('shop/cart')?.meshed, false, 'the agent stream itself was never interrupted');
});

// A second replica, in-process, with the same credentials: it must wait while the controller leads.
const standby = createLeaderElector({
  kubeConfig: relayed,
  namespace: 'weft-system',
  name: 'weft-controller',
  identity: 'standby-replica',
  log: createLogger({}, { write: () => {} }),
  retryMs: 200,
});
t.teardown(() => standby.stop());

t.test('leader election: the controller holds the Lease, a second replica waits', async (t) => {
  let holder = '';
  for (let i = 0; i < 100 && !holder; i++) {
    holder = (await pg.kubectl(['-n', 'weft-system', 'get', 'lease', 'weft-controller', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout.trim();
    if (!holder) await sleep(100);
  }
  t.match(holder, /-\d+$/, `the controller took the Lease (${holder})`);
  standby.start();
  await sleep(1500);
  t.notOk(standby.isLeader(), 'the standby does not take a Lease that is being renewed');
});

t.test('SIGTERM: streams end with SHUTTING_DOWN and the process exits 0', async (t) => {
  const exited = once(controller, 'exit');
  controller.kill('SIGTERM');
  t.match(await stream.trailers, { 'weft-error-code': 'SHUTTING_DOWN' });
  const [code] = (await exited) as [number | null];
  t.equal(code, 0);
  t.notOk(logLines.some((l) => l.includes(nodeToken) || l.includes(nodeToken.split('.')[2] ?? '-')), 'no token reached the log');
  t.notOk(logLines.some((l) => l.includes('PRIVATE KEY')), 'no key reached the log');
});

t.test('a stopped controller releases its Lease: the standby leads at once, not after the lease duration', async (t) => {
  const since = Date.now();
  while (!standby.isLeader() && Date.now() - since < 10_000) await sleep(50);
  t.ok(standby.isLeader(), `the standby became the leader ${Date.now() - since} ms after the controller exited (lease duration 15 s)`);
  t.ok(Date.now() - since < 5_000, 'well before the 15 s lease would have expired');
});
