// End to end: AccessPolicy and MeshTLSPolicy on a real playground — the policy issue's truth table.
// Every case applies real CRDs to the real API server, waits until the policy's own status says it
// is in force (Programmed, observedGeneration current: the controller aggregates the agents'
// acknowledgements), then checks the decision with real traffic from unmodified clients (curl,
// socat) in pods on both nodes: across nodes through tunnels, on the same node, and in plaintext
// from a pod outside the mesh.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Playground, REPO, eventually, pod, sh, uniqueName, weft, type DevStatusJson, type Result } from './helpers/playground.ts';

const pg = new Playground(uniqueName('po'));
t.teardown(async () => {
  await pg.down();
});

const A = 'pol-a'; // meshed; the server lives here
const B = 'pol-b'; // meshed
const P = 'pol-plain'; // not meshed
const INSTALL = 'weft-system';
let status: DevStatusJson;
// What `nsenter --net=` enters: the simulated kubelet's named namespace, or a real pod sandbox's.
const netnsOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name)?.netnsPath ?? '';
const ipOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name)?.ip ?? '';
let serverIP = '';

function kubectl(args: string[], input?: string): Promise<Result> {
  return sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], input !== undefined ? { input } : {});
}

/** Runs a command in a pod's network namespace (as the pod). */
function inPod(ns: string, name: string, cmd: string[], timeoutMs = 10_000): Promise<Result> {
  return sh('nsenter', [`--net=${netnsOf(ns, name)}`, '--', ...cmd], { timeoutMs });
}

type Client = [ns: string, name: string];
const clientA: Client = [A, 'client-a']; // node-2, sa client-a
const local: Client = [A, 'local']; // node-1 (same node as the server), sa local
const clientB: Client = [B, 'client-b']; // node-2, sa client-b
const plain: Client = [P, 'client-p']; // node-2, outside the mesh

/** The HTTP status, or `refused` when the connection was reset or refused. */
async function http(from: Client, path = '/', o: { method?: string; headers?: string[]; port?: number } = {}): Promise<string> {
  const args = ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3', '-X', o.method ?? 'GET'];
  for (const h of o.headers ?? []) args.push('-H', h);
  args.push(`http://${serverIP}:${o.port ?? 8080}${path}`);
  const r = await inPod(...from, args);
  const code = r.stdout.trim();
  return code === '' || code === '000' ? 'refused' : code;
}

/** `ok` when the TCP echo on :9000 answered, else `refused`. */
async function tcp(from: Client, port = 9000): Promise<string> {
  const r = await inPod(...from, ['sh', '-c', `echo weft-ping | socat -T2 - TCP:${serverIP}:${port},connect-timeout=3`]);
  return r.stdout.includes('weft-ping') ? 'ok' : 'refused';
}

async function apply(manifest: object): Promise<void> {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

const accessPolicy = (ns: string, name: string, spec: object) => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace: ns }, spec });
const meshTLSPolicy = (ns: string, name: string, spec: object) => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'MeshTLSPolicy', metadata: { name, namespace: ns }, spec });

interface PolicyObject {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
    selectedWorkloads?: number;
    programmedNodes?: string;
    lastAccepted?: { generation: number; spec: object };
  };
}

async function getPolicy(kind: string, ns: string, name: string): Promise<PolicyObject> {
  const r = await kubectl(['-n', ns, 'get', kind, name, '-o', 'json']);
  if (r.code !== 0) throw new Error(`get ${kind} ${ns}/${name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as PolicyObject;
}

const condition = (p: PolicyObject, type: string) => p.status?.conditions?.find((c) => c.type === type);

/** Waits until the policy's status describes its current generation and says Programmed=True. */
async function programmed(kind: string, ns: string, name: string, timeoutMs = 20_000): Promise<PolicyObject> {
  const until = Date.now() + timeoutMs;
  let p: PolicyObject | undefined;
  while (Date.now() < until) {
    p = await getPolicy(kind, ns, name);
    if (p.status?.observedGeneration === p.metadata.generation && condition(p, 'Programmed')?.status === 'True') return p;
    await sleep(100);
  }
  throw new Error(`${kind} ${ns}/${name} not programmed: ${JSON.stringify(p?.status)}`);
}

async function enforce(manifest: { kind: string; metadata: { name: string; namespace: string } }): Promise<PolicyObject> {
  await apply(manifest);
  return programmed(manifest.kind === 'AccessPolicy' ? 'accesspolicy' : 'meshtlspolicy', manifest.metadata.namespace, manifest.metadata.name);
}

/** The policy keys node-1's agent holds (its admin endpoint, inside the node). */
async function agentPolicies(): Promise<string[]> {
  const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-node-1`, 'curl', '-s', 'http://127.0.0.1:15000/policies']);
  const dump = JSON.parse(r.stdout) as { access: { key: string }[]; mtls: { key: string }[] };
  return [...dump.access, ...dump.mtls].map((p) => p.key);
}

/** Deletes every policy the suite made and waits until node-1's agent dropped them. */
async function reset(): Promise<void> {
  for (const ns of [A, B, P, INSTALL]) {
    await kubectl(['-n', ns, 'delete', 'accesspolicies,meshtlspolicies', '--all', '--wait=true']);
  }
  const until = Date.now() + 20_000;
  while ((await agentPolicies()).length > 0) {
    if (Date.now() > until) throw new Error(`agent still holds ${(await agentPolicies()).join(', ')}`);
    await sleep(100);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The controllers' health endpoints: the host's address (simulated), each Running controller pod's (real; the host routes to pods). */
async function controllerHealth(): Promise<string[]> {
  if (pg.runtime === 'simulated') return [`http://${new URL(status.apiServer).hostname}:15014`];
  const pods = (await pg.status()).pods.filter((p) => p.namespace === INSTALL && p.name.startsWith('weft-controller-') && p.phase === 'Running');
  return pods.map((p) => `http://${p.ip}:15014`);
}

function serverPod(): object {
  const p = pod(A, 'server', [process.execPath, join(REPO, 'tests/helpers/policy-server.ts')], { node: 'node-1', labels: { app: 'server' } }) as {
    spec: { serviceAccountName?: string; containers: Record<string, unknown>[] };
  };
  p.spec.serviceAccountName = 'server';
  const c = p.spec.containers[0] as Record<string, unknown>;
  c.ports = [
    { name: 'web', containerPort: 8080 },
    { name: 'grpc', containerPort: 8081 },
    { name: 'echo', containerPort: 9000 },
  ];
  // An HTTP probe: under default-deny it must keep passing (the kubelet is not a mesh client).
  c.readinessProbe = { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1, failureThreshold: 2 };
  return p;
}

function client(ns: string, name: string, node: string, sa?: string): object {
  const p = pod(ns, name, ['sleep', 'infinity'], { node }) as { spec: { serviceAccountName?: string } };
  if (sa) p.spec.serviceAccountName = sa;
  return p;
}

t.before(async () => {
  const r = await pg.up(2);
  if (r.code !== 0) throw new Error(`weft dev up failed: ${r.stderr}`);
  // Both controller replicas stay: Programmed must count nodes whose agent chose either one
  // (controller/policy/programmed-reports.ts).
  status = await pg.status();
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: A, labels: { 'weft.dev/mesh': 'enabled', team: 'a' } } });
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: B, labels: { 'weft.dev/mesh': 'enabled' } } });
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: P } });
  for (const [ns, sa] of [
    [A, 'server'],
    [A, 'client-a'],
    [A, 'local'],
    [B, 'client-b'],
  ] as const) {
    await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: ns } });
  }
  await apply(serverPod());
  await apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'server', namespace: A },
    spec: {
      selector: { app: 'server' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'grpc', port: 81, targetPort: 8081, appProtocol: 'grpc' },
        { name: 'tcp-echo', port: 9000, targetPort: 9000 },
      ],
    },
  });
  await apply(client(A, 'client-a', 'node-2', 'client-a'));
  await apply(client(A, 'local', 'node-1', 'local'));
  await apply(client(B, 'client-b', 'node-2', 'client-b'));
  await apply(client(P, 'client-p', 'node-2'));
  for (const ns of [A, B, P]) await pg.waitReady(ns, ['--all']);
  status = await pg.status();
  serverIP = ipOf(A, 'server');
  // The Service's endpoints (which make 8080 an HTTP port) must have reached the agents.
  await sleep(1000);
});

t.test('default allow: no policy, everyone connects', async (t) => {
  await reset();
  for (const c of [clientA, local, clientB, plain]) {
    t.equal(await http(c), '200', `${c.join('/')} over HTTP`);
    t.equal(await tcp(c), 'ok', `${c.join('/')} over TCP`);
  }
});

t.test('allow-nothing denies everyone; the kubelet probe keeps the pod Ready', async (t) => {
  await reset();
  const p = await enforce(accessPolicy(A, 'nothing', { selector: { matchLabels: { app: 'server' } } }));
  t.equal(p.status?.selectedWorkloads, 1, 'status counts the one selected workload');
  t.equal(p.status?.programmedNodes, '1/1', 'in force on the one node that hosts it');
  for (const c of [clientA, local, clientB, plain]) {
    t.equal(await http(c), 'refused', `${c.join('/')} over HTTP`);
    t.equal(await tcp(c), 'refused', `${c.join('/')} over TCP`);
  }
  await sleep(4000); // > failureThreshold × periodSeconds
  const ready = await kubectl(['-n', A, 'get', 'pod', 'server', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  t.equal(ready.stdout.trim(), 'True', 'readiness probes still pass under default-deny');
});

t.test('ALLOW by identity: exact, prefix and suffix wildcards', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'by-id', { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${A}/sa/client-a`] }] }] }));
  t.equal(await http(clientA), '200', 'the named identity is allowed');
  t.equal(await http(clientB), 'refused', 'another identity is denied');
  // 9000 is a port no probe names: the agent's delivery to it must not be captured again by the
  // node's own capture and judged as plaintext from the node (which no identity rule admits).
  t.equal(await tcp(clientA), 'ok', 'the named identity reaches an unprobed port too');
  t.equal(await tcp(clientB), 'refused', 'and another identity does not');
  t.equal(await http(local), 'refused', 'same node, another identity: denied');
  t.equal(await http(plain), 'refused', 'plaintext has no identity: denied');

  await enforce(accessPolicy(A, 'by-id', { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ identities: [`cluster.local/ns/${B}/*`] }] }] }));
  t.equal(await http(clientB), '200', 'prefix wildcard (Istio-style, no scheme) allows pol-b');
  t.equal(await http(clientA), 'refused', 'prefix wildcard denies pol-a');

  await enforce(accessPolicy(A, 'by-id', { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ identities: ['*/sa/local'] }] }] }));
  t.equal(await http(local), '200', 'suffix wildcard allows sa local (same node)');
  t.equal(await http(clientA), 'refused', 'suffix wildcard denies sa client-a');
});

t.test('ALLOW by namespace, and by namespace label (relabelling a namespace changes access)', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'by-ns', { rules: [{ from: [{ namespaces: [B] }] }] }));
  t.equal(await http(clientB), '200', 'pol-b allowed');
  t.equal(await http(clientA), 'refused', 'pol-a denied');

  await enforce(accessPolicy(A, 'by-ns', { rules: [{ from: [{ namespaceSelector: { matchLabels: { trusted: 'yes' } } }] }] }));
  t.equal(await http(clientB), 'refused', 'pol-b not labelled yet: denied');
  await kubectl(['label', 'namespace', B, 'trusted=yes']);
  t.equal(await eventually(() => http(clientB), '200'), '200', 'labelling pol-b trusted=yes allows it');
  await kubectl(['label', 'namespace', B, 'trusted-']);
  t.equal(await eventually(() => http(clientB), 'refused'), 'refused', 'removing the label denies it again');
});

t.test('ALLOW by ipBlock with except', async (t) => {
  await reset();
  const node2 = status.nodes.find((n) => n.name === 'node-2');
  await enforce(accessPolicy(A, 'by-ip', { rules: [{ from: [{ ipBlocks: [{ cidr: node2?.podCIDR ?? '', except: [`${ipOf(B, 'client-b')}/32`] }] }] }] }));
  t.equal(await http(clientA), '200', 'meshed pod in the block (its proven address)');
  t.equal(await http(plain), '200', 'plaintext pod in the block');
  t.equal(await http(clientB), 'refused', 'the excepted address is denied');
  t.equal(await http(local), 'refused', 'a pod outside the block is denied');
});

t.test('DENY wins over ALLOW', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'allow-all', { rules: [{}] }));
  await enforce(accessPolicy(A, 'deny-a', { action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${A}/sa/client-a`] }] }] }));
  t.equal(await http(clientA), 'refused', 'denied although an ALLOW rule matches');
  t.equal(await http(clientB), '200', 'others still allowed');

  // The what-if tool, with the agents' own evaluator, agrees with the traffic and names the rule.
  const check = (src: Client, extra: string[] = []) => weft(['policy', 'check', src.join('/'), `${A}/server`, '--port', '8080', '--kubeconfig', status.kubeconfig, ...extra]);
  const denied = await check(clientA);
  t.equal(denied.code, 3, 'weft policy check exits 3 for a denial');
  t.match(denied.stdout, new RegExp(`${A}/deny-a`), 'and names the DENY policy');
  const allowed = await check(clientB, ['-o', 'json']);
  t.equal(allowed.code, 0, 'exits 0 for an allowed client');
  t.match(JSON.parse(allowed.stdout), { decision: 'ALLOW', policy: `${A}/allow-all` }, 'JSON names the ALLOW policy');
});

t.test('scope: mesh-wide (install namespace), namespace, workload', async (t) => {
  await reset();
  await enforce(accessPolicy(INSTALL, 'mesh-deny-b', { action: 'DENY', rules: [{ from: [{ namespaces: [B] }] }] }));
  t.equal(await http(clientB), 'refused', 'a mesh-wide DENY applies in pol-a');
  t.equal(await http(clientA), '200', 'and only to what it matches');
  await reset();
  await enforce(accessPolicy(B, 'elsewhere', { rules: [] }));
  t.equal(await http(clientA), '200', 'a policy in another namespace does not apply here');
  await enforce(accessPolicy(A, 'other-workload', { selector: { matchLabels: { app: 'not-server' } } }));
  t.equal(await http(clientA), '200', 'a workload policy for other pods does not apply');
  await enforce(accessPolicy(A, 'whole-namespace', {}));
  t.equal(await http(clientA), 'refused', 'a namespace-wide allow-nothing applies');
});

t.test('ports by number and by name', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'ports', { rules: [{ to: [{ ports: [8080] }] }] }));
  t.equal(await http(clientA), '200', 'port 8080 allowed by number');
  t.equal(await tcp(clientA), 'refused', 'port 9000 denied');
  await enforce(accessPolicy(A, 'ports', { rules: [{ to: [{ ports: ['tcp-echo'] }] }] }));
  t.equal(await tcp(clientA), 'ok', 'port 9000 allowed by its Service port name');
  t.equal(await http(clientA), 'refused', 'port 8080 denied');
  await enforce(accessPolicy(A, 'ports', { rules: [{ to: [{ ports: ['web'] }] }] }));
  t.equal(await http(clientA), '200', 'port 8080 allowed by its container port name');
  await enforce(accessPolicy(A, 'ports', { rules: [{ to: [{ notPorts: [8080] }] }] }));
  t.equal(await http(clientA), 'refused', 'notPorts excludes 8080');
  t.equal(await tcp(clientA), 'ok', 'notPorts allows the rest');
});

t.test('L7: methods, exact and prefix paths, headers, hosts; 403 and the connection stays usable', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'l7', { rules: [{ to: [{ methods: ['GET'], paths: ['/public/*', '/exact'] }] }] }));
  t.equal(await http(clientA, '/public/x'), '200', 'GET prefix path');
  t.equal(await http(clientA, '/exact'), '200', 'GET exact path');
  t.equal(await http(clientA, '/exact/more'), '403', 'exact path does not match below it');
  t.equal(await http(clientA, '/private'), '403', 'other path: 403');
  t.equal(await http(clientA, '/public/x', { method: 'POST' }), '403', 'POST: 403');
  t.equal(await http(plain, '/public/x'), '200', 'plaintext client, same rule (no from)');
  t.equal(await http(local, '/private'), '403', 'same-node client gets 403 too');
  t.equal(await http(clientA, '//private/../public/x'), '200', 'normalized path is what is matched');
  t.equal(await http(clientA, '/public/../private'), '403', 'dot segments cannot escape the prefix');

  const urls = ['/public/1', '/private', '/public/2'].flatMap((path) => ['-o', '/dev/null', `http://${serverIP}:8080${path}`]);
  const r = await inPod(...clientA, ['curl', '-s', '-w', '%{http_code}:%{num_connects} ', ...urls]);
  t.equal(r.stdout.trim(), '200:1 403:0 200:0', 'one keep-alive connection: allowed, denied, allowed again');

  await enforce(accessPolicy(A, 'l7', { rules: [{ to: [{ headers: [{ name: 'X-Team', values: ['blue'] }] }] }] }));
  t.equal(await http(clientA, '/', { headers: ['x-team: blue'] }), '200', 'header value matches');
  t.equal(await http(clientA, '/', { headers: ['x-team: red'] }), '403', 'other header value: 403');
  t.equal(await http(clientA, '/'), '403', 'no header: 403');

  await enforce(accessPolicy(A, 'l7', { rules: [{ to: [{ hosts: ['*.example.com'] }] }] }));
  t.equal(await http(clientA, '/', { headers: ['Host: api.example.com'] }), '200', 'host suffix wildcard');
  t.equal(await http(clientA, '/', { headers: ['Host: example.org'] }), '403', 'other host: 403');
});

t.test('L7 over gRPC: a denied call gets PERMISSION_DENIED, an allowed one goes through', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'grpc', { rules: [{ to: [{ paths: ['/weft.Test/Allowed'] }] }] }));
  const call = (method: string) =>
    inPod(...clientA, ['curl', '-s', '--http2-prior-knowledge', '-X', 'POST', '-H', 'content-type: application/grpc', '-H', 'te: trailers', '--data-binary', '@/dev/null', '-D', '-', '-o', '/dev/null', `http://${serverIP}:8081/weft.Test/${method}`]);
  const denied = (await call('Denied')).stdout.toLowerCase();
  t.match(denied, /^http\/2 200/m, 'gRPC denials are HTTP 200');
  t.match(denied, /grpc-status: 7/, 'with grpc-status 7 (PERMISSION_DENIED)');
  const allowed = (await call('Allowed')).stdout.toLowerCase();
  t.match(allowed, /^http\/2 200/m, 'allowed call answered');
  t.notMatch(allowed, /grpc-status: 7/, 'not denied');
});

t.test('L7 rules on a port that is not HTTP fail closed, and status says so', async (t) => {
  await reset();
  const p = await enforce(accessPolicy(A, 'l7-on-tcp', { rules: [{ to: [{ ports: [9000], methods: ['GET'] }] }, { to: [{ ports: [8080] }] }] }));
  t.equal(await tcp(clientA), 'refused', 'the ALLOW rule with HTTP fields never matches on a TCP port');
  t.equal(await http(clientA), '200', 'the other rule still allows 8080');
  t.match(condition(p, 'ResolvedRefs'), { status: 'False', reason: 'NotHTTPPort' }, 'ResolvedRefs=False says why');
  t.match(condition(p, 'ResolvedRefs')?.message ?? '', /port 9000 .* not an HTTP port/);
});

t.test('negated forms', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'neg', { rules: [{ from: [{ notIdentities: [`spiffe://cluster.local/ns/${A}/sa/client-a`] }] }] }));
  t.equal(await http(clientB), '200', 'notIdentities: another identity allowed');
  t.equal(await http(clientA), 'refused', 'notIdentities: the excluded identity denied');
  await enforce(accessPolicy(A, 'neg', { rules: [{ from: [{ notNamespaces: [B] }] }] }));
  t.equal(await http(clientA), '200', 'notNamespaces: pol-a allowed');
  t.equal(await http(clientB), 'refused', 'notNamespaces: pol-b denied');
  await enforce(accessPolicy(A, 'neg', { rules: [{ to: [{ notPaths: ['/admin/*'], notMethods: ['DELETE'] }] }] }));
  t.equal(await http(clientA, '/ok'), '200', 'notPaths/notMethods: other requests allowed');
  t.equal(await http(clientA, '/admin/x'), '403', 'notPaths: /admin/* denied');
  t.equal(await http(clientA, '/ok', { method: 'DELETE' }), '403', 'notMethods: DELETE denied');
  await enforce(accessPolicy(A, 'neg', { rules: [{ when: [{ key: 'request.headers[x-debug]', notValues: ['*'] }] }] }));
  t.equal(await http(clientA, '/'), '200', 'when notValues: no x-debug header allowed');
  t.equal(await http(clientA, '/', { headers: ['x-debug: 1'] }), '403', 'when notValues: x-debug present denied');
});

t.test('AUDIT records what it would deny and denies nothing', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'audit-b', { action: 'AUDIT', rules: [{ from: [{ namespaces: [B] }] }] }));
  t.equal(await http(clientB), '200', 'audited, still allowed');
  const metrics = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-node-1`, 'curl', '-s', 'http://127.0.0.1:15020/metrics']);
  t.match(metrics.stdout, new RegExp(`weft_policy_decisions_total\\{[^}]*policy="${A}/audit-b"[^}]*decision="audit"[^}]*\\} [1-9]`), 'the audit decision is counted by policy and rule');
  const audited = (await pg.agentLog('node-1')).split('\n').find((l) => l.includes(`"audits":["${A}/audit-b:rules[0]"`));
  t.ok(audited, 'and logged with the policy that audited');
});

t.test('MeshTLSPolicy: STRICT refuses plaintext, per-port PERMISSIVE override', async (t) => {
  await reset();
  t.equal(await http(plain), '200', 'PERMISSIVE (mesh default): plaintext allowed');
  await enforce(meshTLSPolicy(A, 'strict', { mode: 'STRICT' }));
  t.equal(await http(plain), 'refused', 'STRICT namespace: plaintext refused');
  t.equal(await http(clientA), '200', 'STRICT: mTLS still allowed');
  await enforce(meshTLSPolicy(A, 'strict', { mode: 'STRICT', ports: [{ port: 8080, mode: 'PERMISSIVE' }] }));
  t.equal(await http(plain), '200', 'port 8080 overridden to PERMISSIVE');
  t.equal(await tcp(plain), 'refused', 'port 9000 still STRICT');
  await enforce(meshTLSPolicy(A, 'server-permissive', { selector: { matchLabels: { app: 'server' } }, mode: 'PERMISSIVE' }));
  t.equal(await tcp(plain), 'ok', 'a workload-level PERMISSIVE wins over the namespace STRICT');
});

t.test('update and delete of a policy; relabelling a pod', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'moving', { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ namespaces: [A] }] }] }));
  t.equal(await http(clientA), '200');
  t.equal(await http(clientB), 'refused');
  await enforce(accessPolicy(A, 'moving', { selector: { matchLabels: { app: 'server' } }, rules: [{ from: [{ namespaces: [B] }] }] }));
  t.equal(await http(clientA), 'refused', 'after the update pol-a is denied');
  t.equal(await http(clientB), '200', 'and pol-b allowed');
  await reset();
  t.equal(await http(clientA), '200', 'after the delete: default allow');

  await enforce(accessPolicy(A, 'locked', { selector: { matchLabels: { locked: 'yes' } } }));
  t.equal(await http(clientA), '200', 'the server is not labelled locked: allowed');
  await kubectl(['-n', A, 'label', 'pod', 'server', 'locked=yes']);
  t.equal(await eventually(() => http(clientA), 'refused'), 'refused', 'labelling the pod brings it under the allow-nothing policy');
  await kubectl(['-n', A, 'label', 'pod', 'server', 'locked-']);
  t.equal(await eventually(() => http(clientA), '200'), '200', 'removing the label frees it');
});

t.test('an open connection that a new policy denies is closed', async (t) => {
  await reset();
  // socat keeps the connection open as long as its stdin is; only a reset from the mesh ends it.
  const conn = spawn('nsenter', [`--net=${netnsOf(...clientA)}`, '--', 'socat', '-', `TCP:${serverIP}:9000`], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number>((resolve) => conn.once('exit', () => resolve(Date.now())));
  t.teardown(() => void conn.kill());
  conn.stdin.write('hello\n');
  await new Promise<void>((resolve) => conn.stdout.on('data', (d: Buffer) => d.toString().includes('hello') && resolve()));
  const applied = Date.now();
  await enforce(accessPolicy(A, 'cut', { action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${A}/sa/client-a`] }] }] }));
  const end = await Promise.race([exited, sleep(10_000).then(() => 0)]);
  t.ok(end > 0, `the open connection was closed ${end ? `${end - applied} ms` : 'never (10 s)'} after the policy was applied`);
  conn.stdin.end();
});

t.test('invalid policies: refused by the API server, or Accepted=False; neither disturbs what is in force', async (t) => {
  await reset();
  const bad = await kubectl(['apply', '-f', '-'], JSON.stringify(accessPolicy(A, 'bad-cidr', { rules: [{ from: [{ ipBlocks: [{ cidr: '10.0.0.300/8' }] }] }] })));
  t.not(bad.code, 0, 'a bad CIDR is refused at apply time');
  t.match(bad.stderr, /cidr/i, 'and the error names the field');

  await enforce(accessPolicy(A, 'guard', { rules: [{ from: [{ namespaces: [A] }] }] }));
  t.equal(await http(clientB), 'refused', 'guard in force: pol-b denied');
  await apply(accessPolicy(A, 'guard', { rules: [{ from: [{ namespaces: [A, B] }], to: [{ paths: ['/a*b'] }] }] }));
  let p: PolicyObject | undefined;
  for (let i = 0; i < 100; i++) {
    p = await getPolicy('accesspolicy', A, 'guard');
    if (p.status?.observedGeneration === p.metadata.generation) break;
    await sleep(100);
  }
  t.match(condition(p as PolicyObject, 'Accepted'), { status: 'False', reason: 'Invalid' }, 'Accepted=False');
  t.match(condition(p as PolicyObject, 'Accepted')?.message ?? '', /spec\.rules\[0\]\.to\[0\]\.paths\[0\]: .*\*/, 'the message points at the field');
  t.match(condition(p as PolicyObject, 'Accepted')?.message ?? '', /Generation 1 remains in force/, 'and says what is still enforced');
  t.match(condition(p as PolicyObject, 'Programmed'), { status: 'False', reason: 'Invalid' });
  t.equal(await http(clientB), 'refused', 'the last good generation is still enforced: pol-b still denied');
  t.equal(await http(clientA), '200', 'pol-a still allowed');
  const events = await kubectl(['-n', A, 'get', 'events', '--field-selector', 'involvedObject.name=guard,reason=Rejected', '-o', 'name']);
  t.not(events.stdout.trim(), '', 'a Rejected Event was recorded');
  const describe = await kubectl(['-n', A, 'describe', 'accesspolicy', 'guard']);
  t.match(describe.stdout, /Rejected/, 'kubectl describe shows the Event');
});

t.test('a restarted controller keeps enforcing the last good generation of a refused policy', async (t) => {
  // Continues from the test above: guard's generation 2 is refused, generation 1 is in force.
  const before = await getPolicy('accesspolicy', A, 'guard');
  t.match(before.status?.lastAccepted, { generation: 1, spec: { rules: [{ from: [{ namespaces: [A] }] }] } }, 'the status keeps generation 1 and its spec');
  const old = await pg.weftPids('controller');
  if (old.length === 0) throw new Error('no controller process');
  // Every replica, each with an empty store after: the supervisor starts a new process
  // (simulated), the kubelet restarts the container (real).
  for (const pid of old) process.kill(pid, 'SIGKILL');
  // The new controller's registry starts empty: an ACK from node-1 means that agent has resynced
  // from it (a new epoch: a snapshot), so what it holds now is what the new controller computed.
  const resynced = async (): Promise<string> => {
    try {
      const pids = await pg.weftPids('controller');
      if (pids.length === 0 || pids.some((p) => old.includes(p))) return 'old controller';
      for (const health of await controllerHealth()) {
        const agents = (await (await fetch(`${health}/agents`, { signal: AbortSignal.timeout(2000) })).json()) as { node: string; streams: number; lastAckedRevision?: number }[];
        if (agents.some((a) => a.node === 'node-1' && a.streams > 0 && a.lastAckedRevision !== undefined)) return 'resynced';
      }
      return 'waiting';
    } catch {
      return 'not up';
    }
  };
  t.equal(await eventually(resynced, 'resynced', 60_000), 'resynced', 'node-1 resynced from the new controller');
  t.ok((await agentPolicies()).includes(`${A}/guard`), "node-1's agent still holds guard");
  t.equal(await http(clientB), 'refused', 'generation 1 is still enforced: pol-b denied');
  t.equal(await http(clientA), '200', 'pol-a still allowed');
  const after = await getPolicy('accesspolicy', A, 'guard');
  t.match(condition(after, 'Accepted')?.message ?? '', /Generation 1 remains in force/, 'the new controller says so too');
});

t.test('kubectl get shows the printer columns', async (t) => {
  await reset();
  await enforce(accessPolicy(A, 'cols', { rules: [{}] }));
  const r = await kubectl(['-n', A, 'get', 'accesspolicies']);
  t.match(r.stdout, /ACTION\s+ACCEPTED\s+PROGRAMMED\s+WORKLOADS\s+NODES/, 'header');
  // No selector: every meshed pod of pol-a (server and local on node-1, client-a on node-2).
  t.match(r.stdout, /cols\s+ALLOW\s+True\s+True\s+3\s+2\/2/, 'row');
});

