// End to end: GRPCRoutes with Service parents (GAMMA), routed per call by the client's node agent
// on the h2c path, with real gRPC on both ends: the Istio echo server and client (grpc-go), the
// programs of the Gateway API conformance suite's echo image, built from tests/gateway-api/echo's
// pinned module. The client makes all of a run's calls on one gRPC channel (one HTTP/2
// connection), so a split can only come from balancing per call. Clients run on node-2, backends
// on node-1, so routed calls cross nodes through HBONE tunnels. Either runtime
// (WEFT_TEST_RUNTIME; tests/grpc-routing-real.test.ts is the real one): on real nodes the echo pods
// run the conformance suite's echo image (echoAdvancedImage, loaded with `weft dev up --image`) and
// the client is exec'd in a client pod of that image through the API server, as the conformance
// suite drives it; on simulated nodes the same programs run as host programs in the pods' network
// namespaces. The retry cases add backends that fail calls: tests/helpers/route-server.ts on h2c
// (a testbox pod running the checkout's helper, as the other suites run theirs), answering HTTP 503
// (UNAVAILABLE to grpc-go), or grpc-status 14 trailers-only.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goTool } from './helpers/go-tool.ts';
import { ECHO_MODULE, echoAdvancedImage } from './helpers/gateway-conformance.ts';
import { routeReader } from './helpers/route-status.ts';
import { Playground, REPO, pod, sh, uniqueName, type DevStatusJson, type Result } from './helpers/playground.ts';

const pg = new Playground(uniqueName('grp'));
// ~3 min on a quiet machine, most of it the playground's start (and, once per machine, ~2 min to build the echo programs).
t.setTimeout(900_000);
t.teardown(async () => {
  await pg.down();
});

const NS = 'grp-a';
const CLIENT_NS = 'grp-b';
let status: DevStatusJson;
/** The echo programs as a pod runs them: host binaries (simulated), or the echo image's (real, with its ref). */
let echo: { server: string; client: string; image?: string } = { server: '', client: '' };
let echoIP = '';
const netnsOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name)?.netnsPath ?? '';
/** A host program in a pod's network namespace, on either runtime. */
const inPod = (from: [string, string], cmd: string[], timeoutMs: number) => sh('nsenter', [`--net=${netnsOf(...from)}`, '--', ...cmd], { timeoutMs });
/** An echo pod: the echo server (reporting `version` as its ServiceVersion) on 8080 (HTTP), 7070 (gRPC) and 9090 (TCP). */
const echoPod = (ns: string, name: string, version: string, opts: { node: string; port?: number; labels?: Record<string, string> }) =>
  pod(ns, name, [echo.server, '--port=8080', '--grpc=7070', '--tcp=9090', `--version=${version}`], { ...opts, ...(echo.image ? { image: echo.image } : {}) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function kubectl(args: string[], input?: string, timeoutMs?: number): Promise<Result> {
  return sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
}

async function apply(manifest: object): Promise<void> {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

interface Calls {
  versions: Record<string, number>;
  errors: string[];
  /** Per call: its request headers as the backend saw them, and the response headers, lower case. */
  requestHeaders: string[][];
  responseHeaders: string[][];
}

/** `n` unary Echo calls on one gRPC channel from a pod, with the Istio echo client, to the echo Service (or `to`). */
async function calls(from: [string, string], n: number, headers: string[] = [], to = echoIP): Promise<Calls> {
  const args = [`grpc://${to}:7070`, `--count=${n}`, '--timeout=10s', ...headers.flatMap((h) => ['-H', h])];
  // Real nodes: the client pod's own program, exec'd through the API server; simulated: the host binary in its network namespace.
  const r = pg.runtime === 'real' ? await kubectl(['-n', from[0], 'exec', from[1], '-c', 'main', '--', echo.client, ...args], undefined, 120_000) : await inPod(from, [echo.client, ...args], 120_000);
  const out: Calls = { versions: {}, errors: [], requestHeaders: [], responseHeaders: [] };
  for (const line of `${r.stdout}\n${r.stderr}`.split('\n')) {
    const m = /^\[(\d+)(?: body)?\] (\w+)=(.*)$/.exec(line);
    const e = /^\[(\d+) error\] (.*)$/.exec(line);
    if (e) out.errors.push(e[2] ?? '');
    if (!m) continue;
    const i = Number(m[1]);
    const [field, value] = [m[2], (m[3] ?? '').trim()];
    if (field === 'ServiceVersion') out.versions[value] = (out.versions[value] ?? 0) + 1;
    if (field === 'RequestHeader') (out.requestHeaders[i] ??= []).push(value.toLowerCase());
    if (field === 'ResponseHeader') (out.responseHeaders[i] ??= []).push(value.toLowerCase());
  }
  // A failed call ends the client with its error on stdout or stderr rather than an `[n error]` line.
  if (r.code !== 0 && out.errors.length === 0) out.errors.push(`client exited ${r.code}: ${`${r.stdout}\n${r.stderr}`.trim().slice(-500)}`);
  return out;
}

const { routeStatus, settled, agentRoutes, policyProgrammed } = routeReader({ kind: 'grpcroute', kubectl: (args) => kubectl(args), playground: pg.name });
const httpRoutes = routeReader({ kind: 'httproute', kubectl: (args) => kubectl(args), playground: pg.name });

async function agentMetric(name: string, match: RegExp): Promise<number> {
  const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-node-2`, 'curl', '-s', 'http://127.0.0.1:15020/metrics']);
  let sum = 0;
  for (const line of r.stdout.split('\n')) if (line.startsWith(`${name}{`) && match.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

const grpcRoute = (name: string, rules: object[], ns = NS) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GRPCRoute',
  metadata: { name, namespace: ns },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', namespace: NS, port: 7070 }], rules },
});
const ref = (name: string, weight?: number) => ({ name, namespace: NS, port: 7070, ...(weight !== undefined ? { weight } : {}) });

/** Applies a GRPCRoute (or an HTTPRoute) and waits until node-2's agent holds this generation of it. */
async function route(manifest: { kind?: string; metadata: { name: string; namespace: string } }): Promise<void> {
  await apply(manifest);
  const { name, namespace } = manifest.metadata;
  const kind = manifest.kind ?? 'GRPCRoute';
  const status = kind === 'HTTPRoute' ? httpRoutes.routeStatus : routeStatus;
  const gen = (await status(namespace, name)).metadata.generation;
  const until = Date.now() + 30_000;
  while ((await agentRoutes())[`${kind}/${namespace}/${name}`] !== gen) {
    if (Date.now() > until) throw new Error(`node-2's agent never got ${kind} ${namespace}/${name} generation ${gen}: ${JSON.stringify(await agentRoutes())} ${JSON.stringify((await status(namespace, name)).status)}`);
    await sleep(100);
  }
}

const clientA: [string, string] = [NS, 'client-a'];

t.before(async () => {
  let r: Result;
  if (pg.runtime === 'real') {
    // The conformance suite's echo image (the same programs), loaded on every node.
    const image = await echoAdvancedImage();
    echo = { server: '/usr/local/bin/server', client: '/usr/local/bin/client', image: image.ref };
    r = await pg.up(2, ['--image', image.tarball]);
  } else {
    const [server, client] = await Promise.all([
      goTool(ECHO_MODULE, 'istio.io/istio/pkg/test/echo/cmd/server', 'istio-echo-server'),
      goTool(ECHO_MODULE, 'istio.io/istio/pkg/test/echo/cmd/client', 'istio-echo-client'),
    ]);
    echo = { server, client };
    r = await pg.up(2);
  }
  if (r.code !== 0) throw new Error(`weft dev up failed: ${r.stderr}`);
  status = await pg.status();
  t.comment(`${pg.name}: ${pg.runtime} nodes`);
  // HTTPRoute from the experimental channel: its rules' `retry` (the retry case) is not in standard.
  for (const [channel, f] of [['standard', 'gateway.networking.k8s.io_grpcroutes.yaml'], ['experimental', 'gateway.networking.k8s.io_httproutes.yaml']] as const) {
    const c = await kubectl(['apply', '--server-side', '-f', join(REPO, 'helm/weft/gateway-api', channel, f)], undefined, 60_000);
    if (c.code !== 0) throw new Error(`CRD ${f}: ${c.stderr}`);
  }
  await kubectl(['wait', '--for=condition=Established', 'crd/grpcroutes.gateway.networking.k8s.io', '--timeout=30s'], undefined, 40_000);
  for (const ns of [NS, CLIENT_NS]) await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'weft.dev/mesh': 'enabled' } } });
  // `echo` is the parent (its own pods are v1); echo-v1 and echo-v2 are the backends.
  for (const [name, app] of [['echo', 'echo-v1'], ['echo-v1', 'echo-v1'], ['echo-v2', 'echo-v2']] as const) {
    await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS }, spec: { selector: { app }, ports: [{ name: 'grpc', port: 7070, targetPort: 7070, appProtocol: 'kubernetes.io/h2c' }] } });
  }
  for (const v of ['v1', 'v2']) await apply(echoPod(NS, `echo-${v}`, v, { node: 'node-1', port: 7070, labels: { app: `echo-${v}` } }));
  // `flaky` (the retry case): one endpoint is the echo server, the other answers every call 503.
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'flaky', namespace: NS }, spec: { selector: { app: 'flaky' }, ports: [{ name: 'grpc', port: 7070, targetPort: 7070, appProtocol: 'kubernetes.io/h2c' }] } });
  // `flaky-g` (the gRPC status case): the same echo server, and one that fails every call UNAVAILABLE, trailers-only.
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'flaky-g', namespace: NS }, spec: { selector: { flakyg: 'yes' }, ports: [{ name: 'grpc', port: 7070, targetPort: 7070, appProtocol: 'kubernetes.io/h2c' }] } });
  await apply(echoPod(NS, 'flaky-ok', 'ok', { node: 'node-1', port: 7070, labels: { app: 'flaky', flakyg: 'yes' } }));
  await apply(pod(NS, 'flaky-bad', [process.execPath, join(REPO, 'tests/helpers/route-server.ts'), 'flaky-bad', '503', '--h2c=7070'], { node: 'node-1', port: 7070, labels: { app: 'flaky' } }));
  await apply(pod(NS, 'flaky-grpc', [process.execPath, join(REPO, 'tests/helpers/route-server.ts'), 'flaky-grpc', '200', '--h2c=7070', '--grpc-status=14'], { node: 'node-1', port: 7070, labels: { flakyg: 'yes' } }));
  // The clients: echo pods too, as the conformance suite's are (on real nodes the client program is in their image).
  await apply(echoPod(NS, 'client-a', 'client-a', { node: 'node-2' }));
  await apply(echoPod(CLIENT_NS, 'client-b', 'client-b', { node: 'node-2' }));
  await pg.waitReady(NS, ['--all']);
  await pg.waitReady(CLIENT_NS, ['--all']);
  status = await pg.status();
  echoIP = (await kubectl(['-n', NS, 'get', 'svc', 'echo', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const until = Date.now() + 60_000;
  for (;;) {
    const c = await calls(clientA, 1);
    if (c.versions.v1 === 1) break;
    if (Date.now() > until) throw new Error(`gRPC to the echo Service never answered: ${JSON.stringify(c)}`);
    await sleep(500);
  }
});

t.test('status: Accepted and ResolvedRefs under weft.dev/mesh-controller, with the Gateway API reasons', async (t) => {
  await route(grpcRoute('split', [{ backendRefs: [ref('echo-v1')] }]));
  const ok = await settled(NS, 'split');
  t.equal(ok.Accepted?.status, 'True', ok.Accepted?.message ?? '');
  t.equal(ok.ResolvedRefs?.status, 'True', ok.ResolvedRefs?.message ?? '');
  await apply(grpcRoute('broken', [{ backendRefs: [ref('nope')] }]));
  const broken = await settled(NS, 'broken');
  t.equal(broken.Accepted?.status, 'True');
  t.equal(broken.ResolvedRefs?.status, 'False');
  t.equal(broken.ResolvedRefs?.reason, 'BackendNotFound', broken.ResolvedRefs?.message ?? '');
  const noParent = { ...grpcRoute('orphan', [{ backendRefs: [ref('echo-v1')] }]), spec: { parentRefs: [{ group: '', kind: 'Service', name: 'missing', port: 7070 }], rules: [{ backendRefs: [ref('echo-v1')] }] } };
  await apply(noParent);
  const orphan = await settled(NS, 'orphan');
  t.equal(orphan.Accepted?.status, 'False');
  t.equal(orphan.Accepted?.reason, 'NoMatchingParent');
  const ext = grpcRoute('extension', [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'example.com', kind: 'Thing', name: 'x' } }], backendRefs: [ref('echo-v1')] }]);
  await apply(ext);
  const e = await settled(NS, 'extension');
  t.equal(e.Accepted?.reason, 'UnsupportedValue', `ExtensionRef is refused, not ignored: ${e.Accepted?.message ?? ''}`);
  const described = await kubectl(['-n', NS, 'describe', 'grpcroute', 'broken']);
  t.match(described.stdout, /Controller Name:\s+weft\.dev\/mesh-controller/, 'kubectl describe grpcroute names the controller');
  // How many nodes have it programmed: the nodes of meshed pods it applies to, once their agents acknowledged it.
  let programmed = ok['weft.dev/Programmed'];
  for (let i = 0; i < 100 && programmed?.status !== 'True'; i++) {
    await sleep(200);
    programmed = (await settled(NS, 'split'))['weft.dev/Programmed'];
  }
  t.equal(programmed?.status, 'True', programmed?.message ?? 'no weft.dev/Programmed condition');
  t.match(programmed?.message, /in force on ([2-9])\/\1 nodes/, 'both nodes host meshed pods, and both agents have it');
  for (const n of ['broken', 'orphan', 'extension']) await kubectl(['-n', NS, 'delete', 'grpcroute', n]);
});

t.test('RequestMirror: every call is copied to the mirror backend, answered by its own backend only', async (t) => {
  const sent = () => agentMetric('weft_route_mirror_requests_total', /route="GRPCRoute\/grp-a\/split",mirror_backend="grp-a\/echo-v2:7070",result="sent"/);
  const before = await sent();
  await route(grpcRoute('split', [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: ref('echo-v2') } }], backendRefs: [ref('echo-v1')] }]));
  const c = await calls(clientA, 20);
  t.same(c.versions, { v1: 20 }, `the calls were answered by echo-v1 only (${JSON.stringify(c.versions)} ${c.errors.join('; ')})`);
  let copies = 0;
  for (let i = 0; i < 50 && copies < 20; i++) {
    copies = (await sent()) - before;
    if (copies < 20) await sleep(100);
  }
  t.equal(copies, 20, 'echo-v2 answered a copy of each call (counted as sent by the client agent)');
});

t.test('a method match sends Echo calls to its backend; a method that does not match falls to the next rule', async (t) => {
  const byMethod = (type: string, service: string, method: string) => grpcRoute('split', [{ matches: [{ method: { type, service, method } }], backendRefs: [ref('echo-v2')] }, { backendRefs: [ref('echo-v1')] }]);
  await route(byMethod('Exact', 'proto.EchoTestService', 'Echo'));
  const exact = await calls(clientA, 20);
  t.same(exact.versions, { v2: 20 }, `proto.EchoTestService/Echo went to echo-v2 (${JSON.stringify(exact.versions)})`);
  await route(byMethod('Exact', 'proto.EchoTestService', 'ForwardEcho'));
  const other = await calls(clientA, 20);
  t.same(other.versions, { v1: 20 }, `a rule for another method does not take Echo (${JSON.stringify(other.versions)})`);
  await route(byMethod('RegularExpression', 'proto\\.Echo.*', 'Ech[o]'));
  const regex = await calls(clientA, 20);
  t.same(regex.versions, { v2: 20 }, `a regular expression on service and method (${JSON.stringify(regex.versions)})`);
});

t.test('a header match with request and response header filters', async (t) => {
  await route(
    grpcRoute('split', [
      {
        matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-routed', value: 'canary' }], remove: ['x-drop'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-route', value: 'header' }] } },
        ],
        backendRefs: [ref('echo-v2')],
      },
      { backendRefs: [ref('echo-v1')] },
    ]),
  );
  const canary = await calls(clientA, 5, ['x-canary:yes', 'x-drop:1']);
  t.same(canary.versions, { v2: 5 }, `the header match went to echo-v2 (${JSON.stringify(canary.versions)} ${canary.errors.join('; ')})`);
  const req = canary.requestHeaders[0] ?? [];
  t.ok(req.includes('x-routed:canary'), `RequestHeaderModifier set a header the backend saw (${req.join(', ')})`);
  t.notOk(req.some((h) => h.startsWith('x-drop:')), 'and removed one');
  t.ok(req.includes('x-canary:yes'), 'the matched header went on');
  const resp = canary.responseHeaders[0] ?? [];
  t.ok(resp.includes('x-route:header'), `ResponseHeaderModifier added a header the client saw (${resp.join(', ')})`);
  const plain = await calls(clientA, 5);
  t.same(plain.versions, { v1: 5 }, 'without the header: the other rule');
  t.notOk((plain.responseHeaders[0] ?? []).includes('x-route:header'), 'and not its filters');
});

t.test('a 70/30 split over 2,000 calls on one gRPC channel lands within ±5 points, and is counted', async (t) => {
  const N = 2000;
  const routed = (backend: string) => agentMetric('weft_route_requests_total', new RegExp(`route="GRPCRoute/grp-a/split".*backend="grp-a/${backend}:7070"`));
  const before = { v1: await routed('echo-v1'), v2: await routed('echo-v2') };
  await route(grpcRoute('split', [{ backendRefs: [ref('echo-v1', 70), ref('echo-v2', 30)] }]));
  const c = await calls(clientA, N);
  const v2 = (c.versions.v2 ?? 0) / N;
  t.equal((c.versions.v1 ?? 0) + (c.versions.v2 ?? 0), N, `every call answered by v1 or v2 (${JSON.stringify(c.versions)}; ${c.errors.slice(0, 3).join('; ')})`);
  // 2,000 draws at p=0.3: one standard deviation is 1.02 points; 5 points is ~4.9 of them, so a
  // miss is a bias, not bad luck.
  t.ok(Math.abs(v2 - 0.3) <= 0.05, `echo-v2's share ${(v2 * 100).toFixed(1)}% is within 30±5`);
  // Every stream the agent sent, whatever its answer: a stream that failed at one backend and was
  // retried by the client (gRPC retries refused streams by itself) would skew the share unseen.
  const counted = { v1: (await routed('echo-v1')) - before.v1, v2: (await routed('echo-v2')) - before.v2 };
  t.same(counted, { v1: c.versions.v1 ?? 0, v2: c.versions.v2 ?? 0 }, 'the client agent sent each call once, counted with route and backend labels');
});

t.test('a consumer GRPCRoute applies to its own namespace only', async (t) => {
  await route(grpcRoute('split', [{ backendRefs: [ref('echo-v1')] }]));
  await route(grpcRoute('mine', [{ backendRefs: [ref('echo-v2')] }], CLIENT_NS));
  const b = await calls([CLIENT_NS, 'client-b'], 10);
  t.same(b.versions, { v2: 10 }, `the consumer namespace's client follows its own route (${JSON.stringify(b.versions)} ${b.errors.join('; ')})`);
  const a = await calls(clientA, 10);
  t.same(a.versions, { v1: 10 }, "the producer namespace's client does not see it");
  await kubectl(['-n', CLIENT_NS, 'delete', 'grpcroute', 'mine']);
});

/**
 * One retry case: `service` has two endpoints picked per call, the Istio echo server and
 * route-server.ts (`badPod`), which fails every call. 60 calls: each picks the failing endpoint
 * first with some chance (~1/2), so it is all but certain to be hit (P(never) < 1e-17), and the
 * retry budget (100 per 10 s + 20 %) covers a retry for every call. With `retrying` in force, every
 * call succeeds and each call the failing endpoint took is one retry counted with `reason`; with
 * `plain`, those calls fail at the client as UNAVAILABLE and nothing is retried.
 */
async function retryCase(
  t: Test,
  o: { service: string; badPod: string; kind: 'HTTPRoute' | 'GRPCRoute'; reason: string; retrying: Parameters<typeof route>[0]; plain: Parameters<typeof route>[0]; failedCode: number },
): Promise<void> {
  const N = 60;
  const ip = (await kubectl(['-n', NS, 'get', 'svc', o.service, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  /** Echo calls the failing endpoint has received (route-server.ts records each stream). */
  const failed = async (): Promise<number> => {
    const r = await inPod([NS, o.badPod], ['curl', '-s', '-m', '5', 'http://127.0.0.1:8080/__seen'], 10_000);
    return (JSON.parse(r.stdout) as { path: string }[]).filter((x) => x.path === '/proto.EchoTestService/Echo').length;
  };
  const key = `${o.kind}/${NS}/${o.service}`;
  const retries = () => agentMetric('weft_route_retries_total', new RegExp(`route="${key}".*reason="${o.reason}"`));
  const routed = (code: number) => agentMetric('weft_route_requests_total', new RegExp(`route="${key}".*response_code="${code}"`));

  await route(o.retrying);
  const before = { failed: await failed(), retries: await retries(), ok: await routed(200) };
  const c = await calls(clientA, N, [], ip);
  t.same(c.errors, [], 'no call failed');
  t.same(c.versions, { ok: N }, `every call answered by the echo server (${JSON.stringify(c.versions)})`);
  const hit = (await failed()) - before.failed;
  t.ok(hit > 0 && hit <= N, `the failing endpoint failed ${hit} of the ${N} calls first`);
  t.equal((await retries()) - before.retries, hit, `each of those was retried once, and counted in weft_route_retries_total (reason ${o.reason})`);
  t.equal((await routed(200)) - before.ok, N, 'the agent counted every call as routed and answered 200');

  await route(o.plain);
  const before0 = { failed: await failed(), retries: await retries(), failures: await routed(o.failedCode) };
  const c0 = await calls(clientA, N, [], ip);
  const hit0 = (await failed()) - before0.failed;
  const summary = /(\d+)\/(\d+) requests had errors; first error: (.*)/.exec(c0.errors.join('\n'));
  t.ok(hit0 > 0, `without retries the failing endpoint took ${hit0} of the ${N} calls`);
  t.same([Number(summary?.[1]), Number(summary?.[2])], [hit0, N], `each of them failed at the client (${c0.errors.join('; ').slice(0, 300)})`);
  t.match(summary?.[3] ?? '', /code = Unavailable/, 'as gRPC UNAVAILABLE');
  t.equal((await retries()) - before0.retries, 0, 'nothing retried');
  // A gRPC failure is an HTTP 200 (its status is gRPC's): then every call counts under 200.
  const counted = o.failedCode === 200 ? N : hit0;
  t.equal((await routed(o.failedCode)) - before0.failures, counted, `and the agent counted ${counted} routed with ${o.failedCode}`);
  await kubectl(['-n', NS, 'delete', o.kind.toLowerCase(), o.service]);
}

t.test('retry: an HTTPRoute rule retries the gRPC calls an endpoint answers 503 (UNAVAILABLE to grpc-go) and counts them; without it the client gets the failures', async (t) => {
  // route-server.ts answers every call HTTP 503 without a gRPC status (a gRPC backend behind
  // something that sheds load; grpc-go reads it as UNAVAILABLE). The rule retries 503 once, on the
  // endpoint not tried yet. The CRD refuses attempts: 0 (minimum 1), so the case without retries
  // is a rule without `retry`.
  const flaky = (retry?: object) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'flaky', namespace: NS },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'flaky', port: 7070 }], rules: [{ ...(retry ? { retry } : {}), backendRefs: [{ name: 'flaky', port: 7070 }] }] },
  });
  await retryCase(t, { service: 'flaky', badPod: 'flaky-bad', kind: 'HTTPRoute', reason: '503', retrying: flaky({ codes: [503], attempts: 1 }), plain: flaky(), failedCode: 503 });
});

t.test('retry.weft.dev/grpc-codes: a GRPCRoute retries the calls an endpoint fails UNAVAILABLE (trailers-only) and counts them; without it the client gets the failures', async (t) => {
  // route-server.ts fails every call with grpc-status 14 in a trailers-only response, as a gRPC
  // server does when it fails a call before any answer. GRPCRoute has no retry field: the route's
  // annotation names the gRPC statuses, and the rule retries twice (the HTTPRoute default). The
  // route without it also matches on the service, only so that its spec, and so its generation,
  // changes (an annotation alone does not change a generation, which is what route() waits for).
  const flakyG = (annotations?: Record<string, string>) => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GRPCRoute',
    metadata: { name: 'flaky-g', namespace: NS, ...(annotations ? { annotations } : {}) },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'flaky-g', port: 7070 }],
      rules: [{ ...(annotations ? {} : { matches: [{ method: { service: 'proto.EchoTestService' } }] }), backendRefs: [{ name: 'flaky-g', port: 7070 }] }],
    },
  });
  await retryCase(t, { service: 'flaky-g', badPod: 'flaky-grpc', kind: 'GRPCRoute', reason: 'grpc_14', retrying: flakyG({ 'retry.weft.dev/grpc-codes': 'unavailable' }), plain: flakyG(), failedCode: 200 });
});

t.test("AccessPolicy still decides at the destination, on the routed gRPC client's own identity", async (t) => {
  await route(grpcRoute('split', [{ backendRefs: [ref('echo-v2')] }]));
  await apply({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'no-echo', namespace: NS },
    spec: { selector: { matchLabels: { app: 'echo-v2' } }, action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${NS}/sa/default`] }], to: [{ paths: ['/proto.EchoTestService/Echo'] }] }] },
  });
  await policyProgrammed(NS, 'no-echo');
  const denied = await calls(clientA, 3);
  t.same(denied.versions, {}, 'no call was answered by the backend');
  t.match(denied.errors.join('\n'), /PermissionDenied/, `echo-v2's agent denied client-a's identity with gRPC PERMISSION_DENIED (${denied.errors.join('; ')})`);
  const other = await calls([CLIENT_NS, 'client-b'], 3);
  t.same(other.versions, { v2: 3 }, 'another identity on the same route passes');
  await kubectl(['-n', NS, 'delete', 'accesspolicy', 'no-echo']);
});

/** utime + stime of a process, in ms (USER_HZ is 100). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

// A measurement, not a check (WEFT_GRPC_COST=1): 2,000 unary calls on one channel, 3 rounds, each
// round both ways in turn: through the routed h2c path (a GRPCRoute sending everything to echo-v1)
// and on L4 (no route: the parent Service, whose pods are echo-v1). CPU is both agents' processes.
t.test('cost of the routed h2c path against L4 (measured with WEFT_GRPC_COST=1)', { skip: process.env.WEFT_GRPC_COST !== '1' && 'set WEFT_GRPC_COST=1 to measure' }, async (t) => {
  const agents = async () => (await Promise.all(status.nodes.map((n) => pg.weftPids('agent', n.name)))).flat();
  const N = 2000;
  const rows: string[] = [];
  const noRoute = async () => {
    await kubectl(['-n', NS, 'delete', 'grpcroute', 'split', '--ignore-not-found']);
    while ((await agentRoutes())[`GRPCRoute/${NS}/split`] !== undefined) await sleep(100);
  };
  for (let round = 1; round <= 3; round++) {
    for (const mode of round % 2 === 1 ? ['l4', 'routed'] : ['routed', 'l4']) {
      if (mode === 'routed') await route(grpcRoute('split', [{ backendRefs: [ref('echo-v1')] }]));
      else await noRoute();
      await calls(clientA, 50); // warm: the channel, the tunnel, the upstream session
      const pids = await agents();
      const cpu0 = pids.reduce((a, p) => a + cpuMs(p), 0);
      const t0 = performance.now();
      const c = await calls(clientA, N);
      const wall = (performance.now() - t0) / 1000;
      const cpu = pids.reduce((a, p) => a + cpuMs(p), 0) - cpu0;
      t.equal(c.versions.v1, N, `${mode}: every call answered (${c.errors.slice(0, 2).join('; ')})`);
      rows.push(`round ${round} ${mode}: ${(N / wall).toFixed(0)} calls/s (client process included), agents ${((cpu / N) * 1000).toFixed(0)} ms CPU per 1,000 calls, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    }
  }
  for (const r of rows) t.comment(r);
});

t.test('without a route, gRPC to the Service port still works (the L4 path)', async (t) => {
  await kubectl(['-n', NS, 'delete', 'grpcroute', 'split', '--ignore-not-found']);
  const until = Date.now() + 30_000;
  while ((await agentRoutes())[`GRPCRoute/${NS}/split`] !== undefined) {
    if (Date.now() > until) throw new Error('the route never left node-2');
    await sleep(100);
  }
  const c = await calls(clientA, 10);
  t.same(c.versions, { v1: 10 }, `the parent Service's own pods answered (${JSON.stringify(c.versions)} ${c.errors.join('; ')})`);
});
