// The Helm chart (helm/weft) against a real API server: it lints strictly, the server accepts
// every rendered object (dry run, strict field validation), the objects it accepted carry the
// security settings the chart promises, and — applied for real — the RBAC gives each component
// exactly what its code uses, asked of the API server's own authorizer (`kubectl auth can-i`).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { configFromEnv } from '../agent/config.ts';
import { DEFAULT_MIRROR_LIMITS } from '../agent/route/mirror-limits.ts';
import { loadRoot } from '../controller/ca/root.ts';
import { Playground, REPO, sh } from './helpers/playground.ts';
import type { Result } from './helpers/playground.ts';

const CHART = join(REPO, 'helm/weft');
const CRD_DIR = join(CHART, 'crds');
const NS = 'weft-system';
const pg = new Playground(`h${randomBytes(2).toString('hex')}`);

let helmBin = '';
let kubectlBin = '';
let kubeconfig = '';

const helm = (args: string[]): Promise<Result> => sh(helmBin, args, { timeoutMs: 60_000 });
const kubectl = (args: string[], input?: string): Promise<Result> =>
  sh(kubectlBin, [`--kubeconfig=${kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });
// What `helm install` creates; the `helm test` hooks are checked on their own (below).
const render = (args: string[] = []): Promise<Result> => helm(['template', 'weft', CHART, '-n', NS, '--include-crds', '--skip-tests', ...args]);

t.before(async () => {
  const s = await pg.start(1, ['--no-mesh']);
  kubeconfig = s.kubeconfig;
  kubectlBin = s.kubectl;
  // The playground builds helm next to kubectl (playground/up.ts REQUIRED_BINARIES).
  helmBin = join(dirname(s.kubectl), 'helm');
  const ns = await kubectl(['create', 'namespace', NS]);
  if (ns.code !== 0) throw new Error(`create namespace: ${ns.stderr}`);
});
t.teardown(async () => {
  await pg.down();
});

t.test('helm lint --strict is clean', async (t) => {
  const r = await helm(['lint', '--strict', CHART]);
  t.equal(r.code, 0, `lint exits 0: ${r.stdout}${r.stderr}`);
  t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  t.notMatch(r.stdout, /\[(WARNING|ERROR)\]/, 'no warnings or errors');
});

t.test('values.schema.json and the chart refuse what cannot work', async (t) => {
  const badMode = await render(['--set', 'mtlsMode=LOOSE']);
  t.not(badMode.code, 0, 'an unknown mTLS mode is refused');
  t.match(badMode.stderr, /mtlsMode/);
  const typo = await render(['--set', 'controller.replica=3']);
  t.not(typo.code, 0, 'a misspelt key is refused, not ignored');
  const badBundle = await render(['--set', 'ca.trustBundle=not-a-certificate']);
  t.not(badBundle.code, 0, 'a trust bundle that is not PEM is refused');
  const devCaReplicas = await render(['--set', 'ca.existingSecret=']);
  t.not(devCaReplicas.code, 0, 'a dev CA with several replicas is refused');
  t.match(devCaReplicas.stderr, /controller\.replicas=1/, 'and the message says what to do');
});

t.test('the README openssl recipe makes a root the controller accepts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-helm-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const key = join(dir, 'ca.key');
  const crt = join(dir, 'ca.crt');
  const readme = await readFile(join(CHART, 'README.md'), 'utf8');
  t.match(readme, /openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca\.key/);
  t.match(readme, /-addext "basicConstraints=critical,CA:TRUE,pathlen:0"/);
  const gen = await sh('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  t.equal(gen.code, 0, gen.stderr);
  const req = await sh('openssl', [
    'req', '-x509', '-new', '-key', key, '-sha256', '-days', '3650', '-subj', '/O=Weft/CN=Weft mesh root CA',
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectAltName=URI:spiffe://cluster.local', '-out', crt,
  ]);
  t.equal(req.code, 0, req.stderr);
  const [certificatePem, keyPem] = await Promise.all([readFile(crt, 'utf8'), readFile(key, 'utf8')]);
  const root = await loadRoot({ certificatePem, keyPem, trustDomain: 'cluster.local' });
  t.ok(root.keyId, 'controller/ca/root.ts loadRoot accepts it');

  // The Secret and the bundle as the README says to make them, then the chart as configured.
  const secret = await kubectl(['-n', NS, 'create', 'secret', 'tls', 'weft-ca', `--cert=${crt}`, `--key=${key}`, '--dry-run=server']);
  t.equal(secret.code, 0, `the tls Secret is accepted: ${secret.stderr}`);
  const rendered = await render(['--set-file', `ca.trustBundle=${crt}`]);
  t.equal(rendered.code, 0, rendered.stderr);
  const applied = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-o', 'json', '-f', '-'], rendered.stdout);
  t.equal(applied.code, 0, applied.stderr);
  const bundle = items(applied.stdout).find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'weft-ca-bundle');
  t.equal((bundle?.data as Record<string, string> | undefined)?.['ca.crt']?.trim(), certificatePem.trim(), 'the bundle ConfigMap holds the certificate');
  t.notMatch(rendered.stdout, /PRIVATE KEY/, 'and never a key');
});

t.test('NOTES.txt tells what to do next', async (t) => {
  // helm renders NOTES only for install; --dry-run=client still asks the server its version.
  const install = (args: string[]) => helm(['install', 'weft', CHART, '-n', NS, '--dry-run=client', `--kubeconfig=${kubeconfig}`, ...args]);
  const prod = await install([]);
  t.equal(prod.code, 0, prod.stderr);
  const notes = prod.stdout.slice(prod.stdout.indexOf('NOTES:'));
  t.match(notes, /Secret "weft-ca"/, 'names the CA Secret it waits for');
  t.match(notes, /create configmap weft-ca-bundle --from-file=ca\.crt=ca\.crt/, 'says how to make the bundle');
  t.match(notes, /rollout status daemonset\/weft-agent/);
  t.match(notes, /weft\.dev\/mesh=enabled/, 'says how to mesh a namespace');
  t.notMatch(notes, /WARNING/);
  const dev = await install(['--set', 'ca.existingSecret=', '--set', 'controller.replicas=1']);
  t.equal(dev.code, 0, dev.stderr);
  t.match(dev.stdout.slice(dev.stdout.indexOf('NOTES:')), /WARNING: no CA Secret/, 'warns about the throw-away root');
});

interface K8sObject {
  kind: string;
  metadata: { name: string };
  [field: string]: unknown;
}

/** The objects of a `kubectl apply -o json` answer (a List for several, the object for one). */
function items(json: string): K8sObject[] {
  const doc = JSON.parse(json) as K8sObject & { items?: K8sObject[] };
  return doc.kind === 'List' ? (doc.items ?? []) : [doc];
}

t.test('the API server accepts every rendered object (server dry run)', async (t) => {
  for (const [label, args] of [
    ['defaults', []],
    ['development CA, one replica, CNI API fallback', ['--set', 'ca.existingSecret=', '--set', 'controller.replicas=1', '--set', 'agent.cni.kubeAPI=https://10.96.0.1:443']],
  ] as const) {
    const r = await render([...args]);
    t.equal(r.code, 0, `${label}: renders: ${r.stderr}`);
    const applied = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], r.stdout);
    t.equal(applied.code, 0, `${label}: accepted: ${applied.stderr}`);
    t.equal(applied.stderr.trim(), '', `${label}: no warnings`);
    const kinds = applied.stdout.split('\n').filter((l) => l.endsWith('(server dry run)'));
    t.ok(kinds.length >= 9, `${label}: ${kinds.length} objects accepted`);
  }
  const monitors = await render(['--set', 'serviceMonitor.enabled=true', '--show-only', 'templates/servicemonitor.yaml']);
  t.equal(monitors.code, 0, monitors.stderr);
  t.match(monitors.stdout, /kind: ServiceMonitor[\s\S]*port: http-monitoring/, 'ServiceMonitor scrapes the controller Service');
  t.match(monitors.stdout, /kind: PodMonitor[\s\S]*targetLabel: __address__\s+replacement: \$1:15020/, 'PodMonitor scrapes each agent on its metrics port (it declares no ports)');
});

t.test('the accepted workloads carry the promised security and wiring', async (t) => {
  const r = await render();
  const applied = await kubectl(['apply', '--dry-run=server', '-o', 'json', '-f', '-'], r.stdout);
  t.equal(applied.code, 0, applied.stderr);
  const objs = items(applied.stdout);
  const get = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name) as Workload | undefined;

  const ds = get('DaemonSet', 'weft-agent');
  if (!ds) return t.fail('no agent DaemonSet');
  const pod = ds.spec.template.spec;
  const agent = pod.containers[0];
  if (!agent) return t.fail('no agent container');
  t.equal(pod.hostNetwork, true, 'agent: host network');
  t.same(agent.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] }, 'agent: NET_ADMIN and nothing else');
  t.equal(agent.securityContext.privileged, false);
  t.equal(agent.securityContext.allowPrivilegeEscalation, false);
  t.equal(agent.securityContext.readOnlyRootFilesystem, true);
  t.same(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }, 'agent: one node at a time, the new agent beside the old (hitless handover)');
  t.notOk(agent.ports?.length, 'agent: no declared ports (host ports would keep the surge pod Pending)');
  t.ok(pod.tolerations?.some((x) => x.operator === 'Exists' && x.key === undefined), 'agent: tolerates every taint');
  const env = (name: string) => agent.env.find((e) => e.name === name);
  t.same(env('NODE_NAME')?.valueFrom, { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } }, 'NODE_NAME from the downward API');
  const hostPaths = pod.volumes.flatMap((v) => (v.hostPath ? [v.hostPath.path] : []));
  t.same(hostPaths.sort(), ['/etc/cni/net.d', '/opt/cni/bin', '/var/run/weft'], 'agent: exactly the three host directories');
  const creds = pod.volumes.find((v) => v.projected)?.projected;
  const token = creds?.sources.find((s) => s.serviceAccountToken)?.serviceAccountToken;
  const credMount = agent.volumeMounts.find((m) => m.name === 'weft-credentials');
  t.equal(`${credMount?.mountPath}/${token?.path}`, env('WEFT_TOKEN_FILE')?.value, 'WEFT_TOKEN_FILE is the projected, pod-bound token');
  // The agent watches its own DaemonSet (helm uninstall cleans the nodes): its name, its
  // namespace from the downward API, and the API server's CA projected beside the token.
  t.equal(env('WEFT_DAEMONSET')?.value, ds.metadata.name, 'WEFT_DAEMONSET names the DaemonSet itself');
  t.same(env('WEFT_NAMESPACE')?.valueFrom, { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }, 'WEFT_NAMESPACE from the downward API');
  const kubeCa = creds?.sources.find((s) => s.configMap?.name === 'kube-root-ca.crt')?.configMap?.items?.[0]?.path;
  t.equal(`${credMount?.mountPath}/${kubeCa}`, env('WEFT_KUBE_CA_FILE')?.value, "WEFT_KUBE_CA_FILE is the cluster's kube-root-ca.crt, projected");
  t.equal(pod.automountServiceAccountToken, false, 'agent: no other token');
  t.notOk(pod.volumes.some((v) => v.secret || v.projected?.sources.some((s) => s.secret)), 'agent: mounts no Secret (the CA key stays off the nodes)');
  const port = (c: Container, name: string | number) => (typeof name === 'number' ? name : c.ports.find((p) => p.name === name)?.containerPort);
  t.equal(port(agent, agent.readinessProbe.httpGet.port), 15021, 'agent: readiness on 15021');
  t.equal(port(agent, agent.livenessProbe.httpGet.port), 15021, 'agent: liveness on 15021');

  const deploy = get('Deployment', 'weft-controller');
  if (!deploy) return t.fail('no controller Deployment');
  const cpod = deploy.spec.template.spec;
  const controller = cpod.containers[0];
  if (!controller) return t.fail('no controller container');
  t.equal(deploy.spec.replicas, 2);
  t.equal(cpod.securityContext?.runAsNonRoot, true, 'controller: not root');
  t.same(controller.securityContext.capabilities, { drop: ['ALL'] }, 'controller: no capabilities');
  t.equal(controller.readinessProbe.httpGet.path, '/readyz');
  t.equal(controller.livenessProbe.httpGet.path, '/healthz');
  t.equal(port(controller, controller.readinessProbe.httpGet.port), 15014, 'controller: probes on 15014');
  t.ok(controller.resources.requests && controller.resources.limits, 'controller: resources set');
  t.ok(get('PodDisruptionBudget', 'weft-controller'), 'controller: a PodDisruptionBudget');
  const svc = get('Service', 'weft-controller') as unknown as { spec: { ports: { port: number }[] } } | undefined;
  t.same(svc?.spec.ports.map((p) => p.port), [15012, 15014], 'Service weft-controller on 15012 and 15014');
});

/**
 * The agent's configuration as a chart rendered with `args` gives it: the agent container's env,
 * as the API server accepted it (server dry run), read by the agent's own configFromEnv().
 */
async function agentConfig(args: string[]): Promise<ReturnType<typeof configFromEnv>> {
  const r = await render([...args, '--show-only', 'templates/agent-daemonset.yaml']);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')}: ${r.stderr}`);
  const applied = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-o', 'json', '-f', '-'], r.stdout);
  if (applied.code !== 0) throw new Error(`the API server refused the agent DaemonSet: ${applied.stderr}`);
  const ds = items(applied.stdout).find((o) => o.kind === 'DaemonSet') as Workload | undefined;
  const env = ds?.spec.template.spec.containers[0]?.env ?? [];
  const saved = process.env;
  process.env = { ...Object.fromEntries(env.flatMap((e) => (e.value !== undefined ? [[e.name, e.value]] : []))), NODE_NAME: 'node-a' };
  try {
    return configFromEnv();
  } finally {
    process.env = saved;
  }
}

t.test('agent.routes.mirror reaches the agent: its env, and the limits the agent reads from it', async (t) => {
  t.same((await agentConfig([])).routeMirror, DEFAULT_MIRROR_LIMITS, 'defaults: 64 KiB, 128 copies, 10 s');
  t.same(DEFAULT_MIRROR_LIMITS, { maxBodyBytes: 65536, maxInFlight: 128, timeoutMs: 10_000 }, 'as before they were values');
  const set = ['--set', 'agent.routes.mirror.maxBodyBytes=1048576', '--set', 'agent.routes.mirror.maxInFlight=16', '--set-json', 'agent.routes.mirror.timeoutSeconds=2.5'];
  t.same((await agentConfig(set)).routeMirror, { maxBodyBytes: 1_048_576, maxInFlight: 16, timeoutMs: 2500 }, 'set values are what the agent uses');
  for (const bad of ['agent.routes.mirror.maxInFlight=0', 'agent.routes.mirror.maxInFlight=4097', 'agent.routes.mirror.maxBodyBytes=4194305', 'agent.routes.mirror.maxBodyBytes=-1', 'agent.routes.mirror.timeoutSeconds=0', 'agent.routes.mirror.timeoutSeconds=301', 'agent.routes.mirror.timeout=5']) {
    const r = await render(['--set-json', bad]);
    t.not(r.code, 0, `values.schema.json refuses ${bad}`);
    t.match(r.stderr, /agent\/routes\/mirror/, 'and names the value');
  }
});

interface Container {
  env: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number }[];
  securityContext: { capabilities?: unknown; privileged?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
  readinessProbe: { httpGet: { path: string; port: string | number } };
  livenessProbe: { httpGet: { path: string; port: string | number } };
  resources: { requests?: object; limits?: object };
  volumeMounts: { name: string; mountPath: string }[];
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    updateStrategy?: unknown;
    template: {
      spec: {
        hostNetwork?: boolean;
        automountServiceAccountToken?: boolean;
        securityContext?: { runAsNonRoot?: boolean };
        tolerations?: { key?: string; operator?: string }[];
        containers: Container[];
        volumes: {
          name: string;
          hostPath?: { path: string };
          secret?: object;
          projected?: { sources: { serviceAccountToken?: { path: string }; secret?: object; configMap?: { name: string; items?: { key: string; path: string }[] } }[] };
        }[];
      };
    };
  };
}

interface Hook extends K8sObject {
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: { template?: { metadata?: { annotations?: Record<string, string> } } };
}

t.test('the helm test hooks are valid objects: a meshed server, its Service, a meshed client', async (t) => {
  const hooks = await helm(['template', 'weft', CHART, '-n', NS, '--show-only', 'templates/tests/mesh-traffic.yaml']);
  t.equal(hooks.code, 0, hooks.stderr);
  // Applied for real (a server-side dry run cannot see the ServiceAccounts the same file creates),
  // then removed: nothing runs them here, since this playground has no mesh.
  const applied = await kubectl(['apply', '--validate=strict', '-o', 'json', '-f', '-'], hooks.stdout);
  t.equal(applied.code, 0, applied.stderr);
  t.teardown(() => kubectl(['delete', '--wait=false', '-f', '-'], hooks.stdout));
  const objs = items(applied.stdout) as Hook[];
  t.ok(objs.some((o) => o.kind === 'Service' && o.metadata.name === 'weft-test-server'), 'the server has a Service');
  // The server is a Deployment: `helm test` waits for each hook Pod to end, so a server Pod would
  // hold the client back until the timeout. The client is the Pod whose exit code is the verdict.
  for (const [name, kind] of [
    ['weft-test-server', 'Deployment'],
    ['weft-test-client', 'Pod'],
  ] as const) {
    const o = objs.find((x) => x.metadata.name === name && x.kind === kind);
    if (!o) return t.fail(`no ${kind} ${name}`);
    t.equal(o.metadata.annotations?.['helm.sh/hook'], 'test', `${name} (${o.kind}): a test hook`);
    const podMeta = o.kind === 'Pod' ? o.metadata : o.spec?.template?.metadata;
    t.equal(podMeta?.annotations?.['weft.dev/mesh'], 'enabled', `${name} (${o.kind}): its pods are meshed`);
  }
});

t.test('RBAC applied for real is least privilege (kubectl auth can-i)', async (t) => {
  const rbac = await render(['--show-only', 'templates/serviceaccounts.yaml', '--show-only', 'templates/controller-rbac.yaml', '--show-only', 'templates/agent-rbac.yaml']);
  t.equal(rbac.code, 0, rbac.stderr);
  const applied = await kubectl(['apply', '-f', '-'], rbac.stdout);
  t.equal(applied.code, 0, `RBAC applied: ${applied.stderr}`);
  // The CRDs, so that questions about weft.dev resources have a resource to be about.
  const crds = await kubectl(['apply', '-f', CRD_DIR]);
  t.equal(crds.code, 0, `CRDs applied: ${crds.stderr}`);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', CRD_DIR]);

  // Impersonate the service account with the groups its real tokens carry, so that anything those
  // groups are granted elsewhere in the cluster counts too.
  const as = (sa: string) => [`--as=system:serviceaccount:${NS}:${sa}`, '--as-group=system:serviceaccounts', `--as-group=system:serviceaccounts:${NS}`, '--as-group=system:authenticated'];
  const canI = async (sa: string, verb: string, resource: string, ns?: string): Promise<string> => {
    // `resource#status` asks about the status subresource.
    const [name, sub] = resource.split('#');
    const r = await kubectl(['auth', 'can-i', verb, name as string, ...(sub ? [`--subresource=${sub}`] : []), ...as(sa), ...(ns ? ['-n', ns] : [])]);
    return r.stdout.trim();
  };
  const expect = async (sa: string, answer: 'yes' | 'no', checks: [string, string, string?][]) => {
    for (const [verb, resource, ns] of checks) t.equal(await canI(sa, verb, resource, ns), answer, `${sa}: ${verb} ${resource}${ns ? ` in ${ns}` : ''} → ${answer}`);
  };

  // Its own DaemonSet: list and watch of that one name (the watch selects it by name), in the
  // release namespace; nothing else about DaemonSets anywhere.
  await expect('weft-agent', 'yes', [['get', 'pods'], ['get', 'namespaces'], ['list', 'daemonsets.apps/weft-agent', NS], ['watch', 'daemonsets.apps/weft-agent', NS]]);
  await expect('weft-agent', 'no', [
    ['get', 'daemonsets.apps/weft-agent', NS], ['list', 'daemonsets.apps', NS], ['watch', 'daemonsets.apps', NS],
    ['list', 'daemonsets.apps/other', NS], ['get', 'daemonsets.apps/other', NS],
    ...['create', 'update', 'patch', 'delete'].map((v): [string, string, string] => [v, 'daemonsets.apps/weft-agent', NS]),
    ['list', 'daemonsets.apps/weft-agent', 'kube-system'], ['watch', 'daemonsets.apps/weft-agent', 'default'], ['list', 'daemonsets.apps'],

    ['get', 'secrets'], ['get', 'secrets', NS], ['list', 'secrets', NS], ['create', 'pods'], ['patch', 'nodes'],
    ['list', 'pods'], ['watch', 'pods'], ['delete', 'pods'], ['get', 'configmaps', NS], ['create', 'tokenreviews'],
    ['create', 'serviceaccounts/token', NS],
  ]);
  await expect('weft-controller', 'yes', [
    ...['pods', 'services', 'endpointslices.discovery.k8s.io', 'namespaces'].flatMap((r): [string, string][] => [['list', r], ['watch', r]]),
    ['create', 'tokenreviews.authentication.k8s.io'],
    // Policies: read them, write only their status; Events about them; its leader Lease.
    ...['accesspolicies.weft.dev', 'meshtlspolicies.weft.dev'].flatMap((r): [string, string][] => [['list', r], ['watch', r], ['patch', `${r}#status`]]),
    ['create', 'events'],
    ['create', 'leases.coordination.k8s.io', NS],
    ['update', 'leases.coordination.k8s.io/weft-controller', NS],
    // The replicas' programmed reports, in its own namespace only.
    ...['list', 'watch', 'create', 'update', 'delete'].map((v): [string, string, string] => [v, 'configmaps', NS]),
  ]);
  await expect('weft-controller', 'no', [
    // Nothing it does not use: no Nodes, no single-object reads.
    ['list', 'nodes'], ['get', 'pods'], ['get', 'accesspolicies.weft.dev'],
    // Never a policy's spec, never anyone else's Lease.
    ...['create', 'update', 'patch', 'delete'].map((v): [string, string] => [v, 'accesspolicies.weft.dev']),
    ['update', 'accesspolicies.weft.dev#status'],
    ['update', 'leases.coordination.k8s.io/kube-scheduler', 'kube-system'],
    ['update', 'leases.coordination.k8s.io/other', NS],
    ['list', 'configmaps'], ['create', 'configmaps', 'kube-system'], ['update', 'configmaps', 'default'], ['patch', 'configmaps', NS],
    ['get', 'secrets'], ['get', 'secrets', NS], ['list', 'secrets', NS], ['get', 'secrets/weft-ca', NS],
    ...['create', 'update', 'patch', 'delete'].flatMap((v): [string, string][] => [[v, 'pods'], [v, 'nodes']]),
    ['create', 'pods/eviction'], ['update', 'pods/status'], ['create', 'serviceaccounts/token', NS], ['create', 'subjectaccessreviews.authorization.k8s.io'],
  ]);

  // Beyond single questions: the agent's whole rule list in its namespace is the two reads, its
  // DaemonSet's list and watch, and what every authenticated user may do (self-subject reviews).
  const list = await kubectl(['auth', 'can-i', '--list', ...as('weft-agent'), '-n', NS]);
  t.equal(list.code, 0, list.stderr);
  const resourceRules = list.stdout
    .split('\n')
    .slice(1)
    .filter((l) => /^\S/.test(l) && !/^self\S*reviews\./.test(l))
    .map((l) => l.replace(/\s+/g, ' ').trim());
  t.same(resourceRules.sort(), ['daemonsets.apps [] [weft-agent] [list watch]', 'namespaces [] [] [get]', 'pods [] [] [get]'], 'weft-agent can do nothing else');
});
