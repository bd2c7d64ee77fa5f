// The chart's Grafana dashboards against a real Prometheus scraping a real playground. The chart's
// own scrape jobs (templates/prometheus-scrape.yaml) collect the agents' and the controller's
// metrics while meshed pods on two nodes exchange HTTP, gRPC and TCP traffic — allowed, denied at
// L7 and at L4, failed upstream, a connection cut by a policy change, and requests routed by an
// HTTPRoute (split, retried, timed out) — and then every PromQL
// expression of both dashboards, as the chart ships them (the rendered ConfigMaps), must return
// data. A misspelt metric must not: the check can fail.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Playground, REPO, eventually, pod, sh, uniqueName, type DevStatusJson, type Result } from './helpers/playground.ts';

const CHART = join(REPO, 'helm/weft');
const RELEASE = 'weft';
const INSTALL = 'weft-system';
const PROMETHEUS = '/usr/bin/prometheus'; // Debian's `prometheus` (scripts/install-system-deps.sh)
const NS = 'dash';
const SERVER = 'dash-server'; // pod name and app label: the workload the workload dashboard shows
const CLIENT = 'dash-client';
// Grafana's $__rate_interval is at least four scrape intervals (4 s here) and grows with the time
// range shown; 15 s spans the whole burst of traffic below.
const RATE_INTERVAL = '15s';

const started = Date.now();
const pg = new Playground(uniqueName('db'));
t.teardown(async () => {
  await pg.down();
});

let status: DevStatusJson;
let promURL = '';
let serverIP = '';
/** The server Service's cluster IP: routes apply to traffic for a Service. */
let serviceIP = '';
let rendered: K8sObject[] = [];
/** The instant every dashboard query is evaluated at: just after the traffic. */
let evalAt = 0;
let setupSeconds = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kubectl = (args: string[], input?: string): Promise<Result> =>
  sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });
const helm = (args: string[]): Promise<Result> => sh(join(dirname(status.kubectl), 'helm'), args, { timeoutMs: 60_000 });
const render = (args: string[]): Promise<Result> => helm(['template', RELEASE, CHART, '-n', INSTALL, ...args]);

async function apply(manifest: object): Promise<void> {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

// --- The chart, rendered and read ------------------------------------------------------------

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: { template: PodTemplate };
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: { containers: { name: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[] };
}

/**
 * The chart with the scrape ConfigMap on, as the API server accepts it (server dry run), in JSON:
 * the server is also the YAML parser, since the repository has none.
 */
async function renderChart(): Promise<K8sObject[]> {
  const only = ['prometheus-scrape.yaml', 'dashboards.yaml', 'agent-daemonset.yaml', 'controller-deployment.yaml'].flatMap((f) => ['--show-only', `templates/${f}`]);
  const r = await render(['--set', 'prometheus.scrapeConfig.enabled=true', ...only]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  const applied = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-o', 'json', '-f', '-'], r.stdout);
  if (applied.code !== 0) throw new Error(`the API server refused the rendered chart: ${applied.stderr}`);
  return (JSON.parse(applied.stdout) as { items: K8sObject[] }).items;
}

const object = (kind: string, name: string): K8sObject => {
  const o = rendered.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`the chart rendered no ${kind} ${name}`);
  return o;
};

interface ScrapeJob {
  job_name: string;
  kubernetes_sd_configs?: unknown;
  static_configs?: StaticConfig[];
  [key: string]: unknown;
}
interface StaticConfig {
  targets: string[];
  labels: Record<string, string>;
}

function scrapeJobs(): ScrapeJob[] {
  const text = object('ConfigMap', 'weft-prometheus-scrape').data?.['weft-scrape-configs.yml'] ?? '';
  return (JSON.parse(text) as { scrape_configs: ScrapeJob[] }).scrape_configs;
}

/**
 * What Prometheus' kubernetes_sd (role pod) discovers for one pod: a target per declared container
 * port (or one per container without ports), with the __meta_* labels the chart's relabel rules
 * read (a subset of those it sets).
 */
function discovered(tpl: PodTemplate, o: { name: string; node: string; ip: string }): StaticConfig[] {
  const meta: Record<string, string> = {
    __meta_kubernetes_namespace: INSTALL,
    __meta_kubernetes_pod_name: o.name,
    __meta_kubernetes_pod_node_name: o.node,
    __meta_kubernetes_pod_ip: o.ip,
    __meta_kubernetes_pod_ready: 'true',
  };
  for (const [k, v] of Object.entries(tpl.metadata.labels)) {
    const name = k.replace(/[^a-zA-Z0-9_]/g, '_');
    meta[`__meta_kubernetes_pod_label_${name}`] = v;
    meta[`__meta_kubernetes_pod_labelpresent_${name}`] = 'true';
  }
  return tpl.spec.containers.flatMap((c) =>
    // A container without declared ports is one target at the pod's bare address.
    (c.ports?.length ? c.ports : [undefined]).map((p) => p === undefined ? { targets: [o.ip], labels: { ...meta, __meta_kubernetes_pod_container_name: c.name } } : ({
      targets: [`${o.ip}:${p.containerPort}`],
      labels: {
        ...meta,
        __meta_kubernetes_pod_container_name: c.name,
        __meta_kubernetes_pod_container_port_name: p.name ?? '',
        __meta_kubernetes_pod_container_port_number: String(p.containerPort),
        __meta_kubernetes_pod_container_port_protocol: p.protocol ?? 'TCP',
      },
    })),
  );
}

/** Where the playground runs the controller: the host's fabric address (playground/config.ts hostIP, mesh.ts --health-listen). */
const hostIP = () => new URL(status.apiServer).hostname;

interface WeftTarget {
  component: 'agent' | 'controller';
  name: string;
  node: string;
  ip: string;
}

/**
 * The pods kubernetes_sd would find. Simulated: the agents and the controller are processes, on
 * the nodes' addresses and on the host (node "host"), named as the chart-runner names them. Real:
 * the chart's own pods, with their names and addresses (an agent's is its node's: host network).
 */
function weftTargets(): WeftTarget[] {
  if (pg.runtime === 'simulated') {
    return [
      ...status.nodes.map((n) => ({ component: 'agent' as const, name: `weft-agent-${n.name}`, node: n.name, ip: n.ip })),
      { component: 'controller', name: 'weft-controller-0', node: 'host', ip: hostIP() },
    ];
  }
  return status.pods
    .filter((p) => p.namespace === INSTALL && p.phase === 'Running' && /^weft-(agent|controller)-/.test(p.name))
    .map((p) => ({ component: p.name.startsWith('weft-agent-') ? ('agent' as const) : ('controller' as const), name: p.name, node: p.node, ip: p.ip }));
}

/**
 * The chart's scrape jobs, run unchanged (relabel rules and all) except for the discovery: the
 * playground's agents and controller are processes, not pods, so kubernetes_sd would find
 * nothing. It is replaced by static targets carrying the labels kubernetes_sd would give the
 * chart's pods — every container port of the agent on each node (its node IP, host network) and
 * of the controller (the host) — so the keep rule still has to pick the metrics ports out.
 */
function prometheusConfig(jobs: ScrapeJob[]): object {
  const targets = weftTargets().flatMap((w) =>
    discovered((w.component === 'agent' ? object('DaemonSet', 'weft-agent') : object('Deployment', 'weft-controller')).spec?.template as PodTemplate, w),
  );
  return {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: jobs.map((job) => {
      const staticJob: ScrapeJob = { ...job, scrape_interval: '1s', static_configs: targets };
      delete staticJob.kubernetes_sd_configs;
      return staticJob;
    }),
  };
}

// --- Prometheus ------------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function startPrometheus(config: object): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-dashboards-'));
  const file = join(dir, 'prometheus.yml');
  await writeFile(file, JSON.stringify(config, null, 2)); // JSON is YAML
  const port = await freePort();
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [`--config.file=${file}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  });
  promURL = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  while (!(await fetch(`${promURL}/-/ready`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`prometheus did not start: ${log}`);
    await sleep(200);
  }
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function promGet<T>(path: string, params: Record<string, string>): Promise<T> {
  const url = new URL(path, promURL);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const body = (await (await fetch(url)).json()) as { status: string; data: T; errorType?: string; error?: string };
  if (body.status !== 'success') throw new Error(`${url.pathname} ${JSON.stringify(params)}: ${body.errorType}: ${body.error}`);
  return body.data;
}

async function query(expr: string, at = Date.now() / 1000): Promise<Sample[]> {
  return (await promGet<{ result: Sample[] }>('/api/v1/query', { query: expr, time: String(at) })).result;
}

/** Waits until Prometheus scrapes `count` targets and all of them are up. */
async function targetsUp(count: number): Promise<Sample[]> {
  const until = Date.now() + 30_000;
  let up: Sample[] = [];
  while (Date.now() < until) {
    up = await query('up');
    if (up.length === count && up.every((s) => s.value[1] === '1')) return up;
    await sleep(500);
  }
  throw new Error(`expected ${count} targets up, got ${JSON.stringify(up.map((s) => [s.metric, s.value[1]]))}`);
}

// --- Traffic -----------------------------------------------------------------------------------

const netnsOf = (name: string) => status.pods.find((p) => p.namespace === NS && p.name === name)?.netnsPath ?? '';
const inPod = (name: string, cmd: string[], timeoutMs = 10_000) => sh('nsenter', [`--net=${netnsOf(name)}`, '--', ...cmd], { timeoutMs });
const inClient = (cmd: string[], timeoutMs = 10_000) => inPod(CLIENT, cmd, timeoutMs);

/** The HTTP status of a GET from the client pod, or `refused`. */
async function http(path: string, port = 8080): Promise<string> {
  const r = await inClient(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3', `http://${serverIP}:${port}${path}`]);
  const code = r.stdout.trim();
  return code === '' || code === '000' ? 'refused' : code;
}

/** The grpc-status of a unary call from the client pod (headers and trailers), or `none`. */
async function grpc(method: string): Promise<string> {
  const r = await inClient([
    'curl', '-s', '-m', '3', '--http2-prior-knowledge', '-X', 'POST', '-H', 'content-type: application/grpc', '-H', 'te: trailers',
    '--data-binary', '@/dev/null', '-D', '-', '-o', '/dev/null', `http://${serverIP}:8081/weft.Test/${method}`,
  ]);
  return /^grpc-status:\s*(\d+)/im.exec(r.stdout)?.[1] ?? 'none';
}

/** The HTTP statuses of `n` GETs of one path through the server Service's port 80, in one curl run from the client pod (or `from`). */
async function viaService(path: string, n: number, from = CLIENT): Promise<string[]> {
  const url = `http://${serviceIP}${path}`;
  const r = await inPod(from, ['curl', '-s', '-m', '3', '-w', '%{http_code}\\n', ...Array.from({ length: n }, () => ['-o', '/dev/null', url]).flat()], 20_000);
  return r.stdout.trim().split('\n');
}

/** `ok` when the TCP echo answered, else `refused`. */
async function echo(port = 9000): Promise<string> {
  const r = await inClient(['sh', '-c', `echo weft-ping | socat -T2 - TCP:${serverIP}:${port},connect-timeout=3`]);
  return r.stdout.includes('weft-ping') ? 'ok' : 'refused';
}


const accessPolicy = (name: string, spec: object) => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace: NS }, spec });

async function meshWorkloads(): Promise<void> {
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  for (const sa of [SERVER, CLIENT]) await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: NS } });
  const server = pod(NS, SERVER, [process.execPath, join(REPO, 'tests/helpers/policy-server.ts')], { node: 'node-1' }) as {
    spec: { serviceAccountName?: string; containers: Record<string, unknown>[] };
  };
  server.spec.serviceAccountName = SERVER;
  const c = server.spec.containers[0] as Record<string, unknown>;
  c.ports = [
    { name: 'web', containerPort: 8080 },
    { name: 'grpc', containerPort: 8081 },
    { name: 'echo', containerPort: 9000 },
  ];
  c.readinessProbe = { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 };
  await apply(server);
  await apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: SERVER, namespace: NS },
    spec: {
      selector: { app: SERVER },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'grpc', port: 81, targetPort: 8081, appProtocol: 'grpc' },
        // Nothing listens on 8082: requests there fail upstream, so the 5xx panels have data.
        { name: 'http-down', port: 82, targetPort: 8082, appProtocol: 'http' },
        { name: 'tcp-echo', port: 9000, targetPort: 9000 },
      ],
    },
  });
  const client = pod(NS, CLIENT, ['sleep', 'infinity'], { node: 'node-2' }) as { spec: { serviceAccountName?: string } };
  client.spec.serviceAccountName = CLIENT;
  await apply(client);
  await pg.waitReady(NS, ['--all']);
  status = await pg.status();
  serverIP = status.pods.find((p) => p.namespace === NS && p.name === SERVER)?.ip ?? '';
  serviceIP = (await kubectl(['-n', NS, 'get', 'service', SERVER, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
}

/** The Gateway API CRDs as the chart pins them (the experimental channel: HTTPRoute retry). */
async function gatewayAPI(): Promise<void> {
  const dir = join(REPO, 'helm/weft/gateway-api/experimental');
  for (const f of readdirSync(dir)) {
    const r = await kubectl(['apply', '--server-side', '-f', join(dir, f)]);
    if (r.code !== 0) throw new Error(`CRD ${f}: ${r.stderr}`);
  }
  await kubectl(['wait', '--for=condition=Established', 'crd/httproutes.gateway.networking.k8s.io', '--timeout=30s']);
}

t.before(async () => {
  const up = await pg.up(2);
  if (up.code !== 0) throw new Error(`weft dev up failed: ${up.stderr}`);
  status = await pg.status();
  rendered = await renderChart();
  await startPrometheus(prometheusConfig(scrapeJobs()));
  await gatewayAPI();
  await meshWorkloads();
  await targetsUp(weftTargets().length);
  setupSeconds = (Date.now() - started) / 1000;
});

// --- Dashboards --------------------------------------------------------------------------------

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboardFiles = { 'weft-dashboard-node': 'node.json', 'weft-dashboard-workload': 'workload.json' } as const;

function dashboard(configMap: keyof typeof dashboardFiles): Dashboard {
  const data = object('ConfigMap', configMap).data ?? {};
  return JSON.parse(data[`weft-${dashboardFiles[configMap]}`] ?? 'null') as Dashboard;
}

/** Every panel, rows' nested panels included, rows themselves left out. */
function panelsOf(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]));
}

/** A dashboard expression as Grafana would send it: variables replaced by the values given. */
function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replaceAll('$__rate_interval', RATE_INTERVAL).replace(/\$\{?(\w+)\}?/g, (m, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new Error(`${expr}: no value for ${m}`);
    return v;
  });
}

t.test('the chart ships both dashboards and the scrape jobs, as the API server accepts them', async (t) => {
  t.comment(`setup (playground, chart, Prometheus, pods, all targets up): ${setupSeconds.toFixed(1)} s`);
  for (const [cm, file] of Object.entries(dashboardFiles)) {
    const o = object('ConfigMap', cm);
    t.equal(o.metadata.labels?.grafana_dashboard, '1', `${cm}: labelled for the Grafana sidecar`);
    t.equal(o.metadata.namespace, INSTALL, `${cm}: in the release namespace`);
    const fromFile: unknown = JSON.parse(await readFile(join(CHART, 'dashboards', file), 'utf8'));
    t.same(dashboard(cm as keyof typeof dashboardFiles), fromFile, `${cm}: holds dashboards/${file} intact`);
  }
  const jobs = scrapeJobs();
  t.same(jobs.map((j) => j.job_name).sort(), ['weft-agent', 'weft-controller'], 'one scrape job per component');
  for (const j of jobs) t.same(j.kubernetes_sd_configs, [{ role: 'pod', namespaces: { names: [INSTALL] } }], `${j.job_name}: pods of the release namespace`);

  const defaults = await render([]);
  t.equal(defaults.code, 0, `renders with the default values: ${defaults.stderr}`);
  t.match(defaults.stdout, /name: weft-dashboard-node\n/, 'dashboards are on by default');
  t.notMatch(defaults.stdout, /weft-prometheus-scrape/, 'the scrape ConfigMap is off by default');
  const off = await render(['--set', 'dashboards.enabled=false']);
  t.notMatch(off.stdout, /weft-dashboard-/, 'dashboards.enabled=false leaves them out');
  const relabelled = await render(['--set', 'dashboards.label=grafana_dashboard_weft', '--set', 'dashboards.namespace=monitoring', '--show-only', 'templates/dashboards.yaml']);
  t.match(relabelled.stdout, /namespace: monitoring\n[\s\S]*grafana_dashboard_weft: "1"/, 'label and namespace follow the values');
  for (const bad of ['prometheus.scrapeConfig.enable=true', 'dashboards.label=not a label', 'prometheus.scrapeConfig.interval=often']) {
    const r = await render(['--set', bad]);
    t.not(r.code, 0, `values.schema.json refuses ${bad}`);
  }
});

t.test('the scrape jobs keep exactly the metrics ports and label each agent with its node', async (t) => {
  const up = await query('up');
  const got = up.map((s) => `${s.metric.job} ${s.metric.instance} node=${s.metric.node ?? ''} pod=${s.metric.pod ?? ''}`).sort();
  const want = weftTargets()
    .map((w) => (w.component === 'agent' ? `weft-agent ${w.ip}:15020 node=${w.node} pod=${w.name}` : `weft-controller ${w.ip}:15014 node=${w.node} pod=${w.name}`))
    .sort();
  t.same(got, want, 'one target per agent and per controller; health, HBONE and agent-API ports dropped');
});

t.test('traffic through the mesh: allowed, denied at L7 and L4, failed upstream, cut by a policy change, routed', async (t) => {
  const began = Date.now();
  // DENY on paths: the HTTP and gRPC ports become L7-inspected, so requests are counted.
  await apply(
    accessPolicy('deny-admin', {
      action: 'DENY',
      rules: [{ to: [{ ports: [8080, 8082], paths: ['/admin/*'] }, { ports: [8081], paths: ['/weft.Test/Denied'] }] }],
    }),
  );
  t.equal(await eventually(() => http('/admin/x'), '403'), '403', 'the L7 DENY is in force');

  // A connection open before a policy that denies it: the agent closes it.
  const conn = spawn('nsenter', [`--net=${netnsOf(CLIENT)}`, '--', 'socat', '-', `TCP:${serverIP}:9000`], { stdio: ['pipe', 'pipe', 'ignore'] });
  t.teardown(() => void conn.kill());
  const exited = once(conn, 'exit');
  conn.stdin.write('hello\n');
  await new Promise<void>((resolve) => conn.stdout.on('data', (d: Buffer) => d.toString().includes('hello') && resolve()));
  await apply(accessPolicy('cut', { action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${NS}/sa/${CLIENT}`] }], to: [{ ports: [9000] }] }] }));
  const closed = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
  t.ok(closed, 'the open connection was closed by the policy change');
  conn.stdin.end();
  // The same policy moved to port 9001: the echo on 9000 works again (L4 traffic whose bytes the
  // destination counts) and connections to 9001 are refused at L4.
  await apply(accessPolicy('cut', { action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${NS}/sa/${CLIENT}`] }], to: [{ ports: [9001] }] }] }));
  t.equal(await eventually(() => echo(), 'ok'), 'ok', 'the echo on 9000 is allowed again');

  // An HTTPRoute on the server Service: /sleep/ times out; the rest is split evenly between the
  // Service's port 80 and its port 82, where nothing listens, so half the requests are retried
  // and, the one endpoint failing again, answered 503. Each attempt there is answered 503 by the
  // server's agent, which inspects 8082 at L7 (deny-admin's paths) and cannot connect to it: the
  // retries are counted with reason 503, not connect.
  await apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'dash-route', namespace: NS },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: SERVER, port: 80 }],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/sleep/' } }], timeouts: { request: '200ms' }, backendRefs: [{ name: SERVER, port: 80 }] },
        { retry: { attempts: 2 }, backendRefs: [{ name: SERVER, port: 80, weight: 1 }, { name: SERVER, port: 82, weight: 1 }] },
      ],
    },
  });
  t.equal(await eventually(async () => (await viaService('/sleep/1000', 1)).join(), '504'), '504', 'the route is in force on the client agent (a 200 ms timeout answers 504)');
  // The server workload sends through the same route too (to its own Service, from node-1): the
  // workload dashboard's routing row shows the requests a workload sent, and the server is the
  // workload its variables offer (they list workloads that receive traffic; the client receives none).
  t.equal(await eventually(async () => (await viaService('/sleep/1000', 1, SERVER)).join(), '504'), '504', "the route is in force on the server's agent too");

  const want = { ok: '200', admin: '403', upstreamDown: '5xx', grpcOk: '0', grpcDenied: '7', echo: 'ok', l4Denied: 'refused', routed: '200,503', timedOut: '504', serverRouted: '200,503', serverTimedOut: '504' };
  const burst = Date.now();
  let rounds = 0;
  // At least 10 rounds, spread over at least 3 s: rate() needs a series to grow between two of the
  // 1 s scrapes, and ten rounds can fit inside one scrape interval, where a counter that first
  // appears at its final value has a rate of 0.
  while (Date.now() - burst < 8_000 && (rounds < 10 || Date.now() - burst < 3_000)) {
    const got = {
      ok: await http('/public/hello'),
      admin: await http('/admin/secrets'),
      upstreamDown: await http('/', 8082),
      grpcOk: await grpc('Allowed'),
      grpcDenied: await grpc('Denied'),
      echo: await echo(),
      l4Denied: await echo(9001),
      // Four per round: over the rounds both backends are all but certain to be picked.
      routed: [...new Set(await viaService('/public/routed', 4))].sort().join(),
      timedOut: (await viaService('/sleep/1000', 1)).join(),
      serverRouted: [...new Set(await viaService('/public/routed', 4, SERVER))].sort().join(),
      serverTimedOut: (await viaService('/sleep/1000', 1, SERVER)).join(),
    };
    if (rounds++ === 0) {
      const split = (x: string) => (want.routed.includes(x) ? want.routed : x);
      const kinds = { ...got, upstreamDown: got.upstreamDown.replace(/^5\d\d$/, '5xx'), routed: split(got.routed), serverRouted: split(got.serverRouted) };
      t.same(kinds, want, `each kind of request gets the answer the panels expect (upstream down: ${got.upstreamDown})`);
    }
  }
  // Two more scrapes of every target, so the last requests are in Prometheus.
  await sleep(2500);
  evalAt = Date.now() / 1000;
  t.comment(`traffic: policies and the cut connection, then ${rounds} rounds of requests; ${((Date.now() - began) / 1000).toFixed(1)} s in all`);
});

/**
 * Runs every target expression of a dashboard at evalAt and asserts that each returns data: at
 * least one series, and a value above zero — the traffic above makes every panel non-zero except
 * those named in `mayBeZero` (gauges for which 0 is the healthy reading).
 */
async function everyExpression(t: Test, d: Dashboard, vars: Record<string, string>, mayBeZero: string[], panels = panelsOf(d)): Promise<number> {
  let n = 0;
  for (const p of panels) {
    for (const target of p.targets ?? []) {
      const expr = substitute(target.expr, vars);
      const result = await query(expr, evalAt);
      const values = result.map((s) => Number(s.value[1]));
      const shown = values.map((v) => Number(v.toPrecision(3))).join(', ');
      const data = mayBeZero.includes(p.title) ? values.some(Number.isFinite) : values.some((v) => v > 0);
      t.ok(data, `${d.title} › ${p.title} › ${target.legendFormat ?? target.refId}: ${values.length} series (${shown})`, { expr, values });
      n++;
    }
  }
  return n;
}

/** Each `label_values(selector, label)` variable query offers the wanted value. */
async function variables(t: Test, d: Dashboard, vars: Record<string, string>, want: Record<string, string>): Promise<void> {
  for (const v of d.templating.list.filter((x) => x.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
    if (!m?.[1] || !m[2]) {
      t.fail(`${d.title}: variable ${v.name} is not a label_values query: ${q}`);
      continue;
    }
    const values = await promGet<string[]>(`/api/v1/label/${m[2]}/values`, { 'match[]': substitute(m[1], vars), start: String(evalAt - 300), end: String(evalAt) });
    t.ok(values.includes(want[v.name] ?? ''), `${d.title}: variable ${v.name} offers ${want[v.name]} (${values.join(', ')})`);
  }
}

t.test('the dashboards are importable Grafana models on a ${datasource} variable', async (t) => {
  for (const cm of Object.keys(dashboardFiles) as (keyof typeof dashboardFiles)[]) {
    const d = dashboard(cm);
    const ds = d.templating.list.find((v) => v.name === 'datasource');
    t.match(ds, { type: 'datasource', query: 'prometheus' }, `${d.title}: a datasource variable of type prometheus`);
    const ids = d.panels.flatMap((p) => [p.id, ...(p.panels ?? []).map((c) => c.id)]);
    t.equal(new Set(ids).size, ids.length, `${d.title}: panel ids are unique`);
    for (const p of panelsOf(d)) {
      t.ok(p.gridPos.x + p.gridPos.w <= 24, `${d.title} › ${p.title}: fits the 24-column grid`);
      t.ok((p.targets ?? []).length > 0, `${d.title} › ${p.title}: has queries`);
      const sources = [p.datasource, ...(p.targets ?? []).map((x) => x.datasource)];
      t.ok(
        sources.every((s) => s?.type === 'prometheus' && s.uid === '${datasource}'),
        `${d.title} › ${p.title}: reads \${datasource}`,
      );
    }
    for (const v of d.templating.list.filter((x) => x.type === 'query')) t.equal(v.datasource?.uid, '${datasource}', `${d.title}: variable ${v.name} reads \${datasource}`);
  }
});

/** A dashboard's routing row, by what each panel shows. Routes are applied, and counted, by the client's agent. */
interface RoutingRow {
  requests: string;
  errors: string;
  retries: string;
  /** Each backend's share of its route (the workload dashboard's). */
  share?: string;
}
const NODE_ROUTING: RoutingRow = { requests: 'Routed requests by backend', errors: 'Routed request errors by backend', retries: 'Retries and timeouts' };
const WORKLOAD_ROUTING: RoutingRow = {
  requests: 'Routed requests sent, by backend',
  share: "Split: each backend's share of its route",
  errors: 'Routed request errors, by backend',
  retries: 'Retries and timeouts of its routed requests',
};
const ROUTE = `HTTPRoute/${NS}/dash-route`;

const titlesOf = (row: RoutingRow): string[] => [row.requests, row.share, row.errors, row.retries].filter((x) => x !== undefined);

function routingPanelsOf(d: Dashboard, row: RoutingRow): Panel[] {
  return panelsOf(d).filter((p) => titlesOf(row).includes(p.title));
}

/**
 * Checks a dashboard's routing row against dash-route's traffic as `vars` select it: every
 * expression returns data, the split has one series per backend, the errors include the backend
 * where nothing listens, the retries are the 503s from there and the timeouts the /sleep/ rule's;
 * the shares of a route add up to 1. Returns the number of expressions checked.
 */
async function routingRow(t: Test, d: Dashboard, row: RoutingRow, vars: Record<string, string>): Promise<number> {
  const panels = routingPanelsOf(d, row);
  t.same(panels.map((p) => p.title).sort(), titlesOf(row).sort(), `${d.title}: the routing row has its panels`);
  const shown = Object.entries(vars).map(([k, v]) => `${k}=${v}`).join(' ');
  const n = await everyExpression(t, d, vars, [], panels);
  const series = async (title: string, refId = 'A'): Promise<Sample[]> => {
    const expr = panels.find((p) => p.title === title)?.targets?.find((x) => x.refId === refId)?.expr ?? '';
    return query(substitute(expr, vars), evalAt);
  };
  const backends = [`${NS}/${SERVER}:80`, `${NS}/${SERVER}:82`];
  const split = await series(row.requests);
  t.same(split.map((s) => s.metric.backend).sort(), backends, `${shown}: one series per backend (${JSON.stringify(split.map((s) => s.metric))})`);
  t.ok(split.every((s) => s.metric.route === ROUTE), `${shown}: all of them dash-route's`);
  const errors = await series(row.errors);
  t.ok(errors.some((s) => s.metric.backend === backends[1]), `${shown}: errors for the backend where nothing listens (${JSON.stringify(errors.map((s) => s.metric))})`);
  const retries = await series(row.retries, 'A');
  t.same(retries.map((s) => `${s.metric.route} ${s.metric.reason}`), [`${ROUTE} 503`], `${shown}: the retries are dash-route's, of the 503s of the backend where nothing listens`);
  const timeouts = await series(row.retries, 'B');
  t.same(timeouts.map((s) => `${s.metric.route} ${s.metric.timeout}`), [`${ROUTE} request`], `${shown}: the timeouts are its request timeouts`);
  if (row.share) {
    const shares = await series(row.share);
    const sum = shares.reduce((a, s) => a + Number(s.value[1]), 0);
    t.same(shares.map((s) => s.metric.backend).sort(), backends, `${shown}: a share per backend`);
    t.ok(Math.abs(sum - 1) < 1e-9 && shares.every((s) => Number(s.value[1]) > 0 && Number(s.value[1]) < 1), `${shown}: shares between 0 and 1 that add up to 1 (${shares.map((s) => Number(s.value[1]).toFixed(3)).join(', ')})`);
  }
  return n;
}

t.test('node dashboard: every expression returns data for the server node, the routing panels for the client node', async (t) => {
  const d = dashboard('weft-dashboard-node');
  await variables(t, d, {}, { node: 'node-1' });
  const routing = routingPanelsOf(d, NODE_ROUTING);
  const n = await everyExpression(t, d, { node: 'node-1' }, ['Open connections', 'Config revision lag'], panelsOf(d).filter((p) => !routing.includes(p)));
  t.ok(n >= 14, `${n} expressions checked`);
  const r = await routingRow(t, d, NODE_ROUTING, { node: 'node-2' });
  t.equal(r, 4, 'split, errors, retries and timeouts checked on node-2');
  // All nodes selected (Grafana sends the values as one regex): one series per node.
  const all = status.nodes.map((x) => x.name).join('|');
  for (const title of ['Agent CPU', 'Agent memory (RSS)']) {
    const expr = panelsOf(d).find((p) => p.title === title)?.targets?.[0]?.expr ?? '';
    const nodes = (await query(substitute(expr, { node: all }), evalAt)).map((s) => s.metric.node).sort();
    t.same(nodes, status.nodes.map((x) => x.name).sort(), `${title}: one series per node`);
  }
});

t.test('workload dashboard: every expression returns data for the server workload; the routing row is the requests a workload sent', async (t) => {
  const d = dashboard('weft-dashboard-workload');
  const vars = { namespace: NS, workload: SERVER };
  await variables(t, d, vars, vars);
  const routing = routingPanelsOf(d, WORKLOAD_ROUTING);
  const n = await everyExpression(t, d, vars, ['Open TCP connections'], panelsOf(d).filter((p) => !routing.includes(p)));
  t.ok(n >= 11, `${n} expressions checked`);
  // Both workloads sent through dash-route, each from its own node: each one's row shows its own.
  const r = await routingRow(t, d, WORKLOAD_ROUTING, vars);
  t.equal(r, 5, 'requests, split, errors, retries and timeouts checked for the server');
  await routingRow(t, d, WORKLOAD_ROUTING, { namespace: NS, workload: CLIENT });
  // Scoped by the workload, not the node or the route: one that sent nothing routed has no series.
  for (const p of routing) {
    for (const target of p.targets ?? []) {
      const none = await query(substitute(target.expr, { namespace: NS, workload: 'no-such-workload' }), evalAt);
      t.same(none, [], `${p.title} › ${target.legendFormat ?? target.refId}: nothing for a workload that sent no routed request`);
    }
  }
});

t.test('mutation: a misspelt metric or an unknown workload returns nothing', async (t) => {
  const d = dashboard('weft-dashboard-workload');
  const expr = panelsOf(d).find((p) => p.title === 'Request rate by response code')?.targets?.[0]?.expr ?? '';
  t.not(expr, '', 'the request-rate expression exists');
  const good = await query(substitute(expr, { namespace: NS, workload: SERVER }), evalAt);
  t.ok(good.length > 0, 'as shipped it returns data');
  const misspelt = await query(substitute(expr.replace('weft_requests_total', 'weft_request_total'), { namespace: NS, workload: SERVER }), evalAt);
  t.same(misspelt, [], 'weft_request_total (misspelt) returns nothing');
  const elsewhere = await query(substitute(expr, { namespace: NS, workload: 'no-such-workload' }), evalAt);
  t.same(elsewhere, [], 'another workload returns nothing');
  t.comment(`whole suite so far: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
