// End to end: Gateway API HTTPRoutes with Service parents (GAMMA), routed by the client's node
// agent, on a real playground with real traffic. The Gateway API CRDs (experimental channel, for
// rules[].retry) are applied from the chart's pinned copy; routes are real objects, and each case
// waits until the route's own status says Accepted and the client's agent holds it. Clients run on
// node-2, every backend on node-1, so that routed requests cross nodes through HBONE tunnels.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { routeReader } from './helpers/route-status.ts';
import { Playground, REPO, pod, sh, uniqueName, weft, type DevStatusJson, type Result } from './helpers/playground.ts';

const pg = new Playground(uniqueName('rte'));
// 2–4 min on a quiet machine, most of it the playground's start; up to 8 min was seen at load 30.
t.setTimeout(600_000);
t.teardown(async () => {
  await pg.down();
});

const A = 'rte-a'; // producer namespace: the Services and their routes
const B = 'rte-b'; // consumer namespace: a client and its own route for A's Service
let status: DevStatusJson;
// What `nsenter --net=` enters: the simulated kubelet's named namespace, or a real pod sandbox's.
const netnsOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name)?.netnsPath ?? '';
/** A host program in a pod's network namespace, on either runtime. */
const inPod = (from: [string, string], cmd: string[], timeoutMs: number) => sh('nsenter', [`--net=${netnsOf(...from)}`, '--', ...cmd], { timeoutMs });

function kubectl(args: string[], input?: string, timeoutMs?: number): Promise<Result> {
  return sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
}

async function apply(manifest: object): Promise<void> {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLIENT = join(REPO, 'tests/helpers/route-client.ts');
const SERVER = join(REPO, 'tests/helpers/route-server.ts');

interface Counted {
  pods: Record<string, number>;
  statuses: Record<string, number>;
  sockets: number;
}

/** Runs the route client in a pod's network namespace. */
async function count(from: [string, string], url: string, n: number, concurrency: number, headers: string[] = []): Promise<Counted> {
  const r = await inPod(from, [process.execPath, CLIENT, 'count', url, String(n), String(concurrency), ...headers], 120_000);
  if (r.code !== 0) throw new Error(`route client failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Counted;
}

async function curl(from: [string, string], url: string, extra: string[] = []): Promise<{ code: string; headers: string; body: string }> {
  const r = await inPod(from, ['curl', '-s', '-m', '5', '-D', '-', ...extra, url], 10_000);
  const [head = '', body = ''] = r.stdout.split(/\r\n\r\n/, 2);
  return { code: /^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 'refused', headers: head.toLowerCase(), body };
}

const { routeStatus, settled, agentRoutes, policyProgrammed } = routeReader({ kind: 'httproute', kubectl: (args) => kubectl(args), playground: pg.name });

/** Applies a route and waits until node-2's agent holds this generation of it. */
async function route(manifest: { metadata: { name: string; namespace: string } }): Promise<void> {
  await apply(manifest);
  const { name, namespace } = manifest.metadata;
  const gen = (await routeStatus(namespace, name)).metadata.generation;
  const until = Date.now() + 30_000;
  while ((await agentRoutes())[`HTTPRoute/${namespace}/${name}`] !== gen) {
    if (Date.now() > until) throw new Error(`node-2's agent never got ${namespace}/${name} generation ${gen}: ${JSON.stringify(await agentRoutes())} ${JSON.stringify((await routeStatus(namespace, name)).status)}`);
    await sleep(100);
  }
}

async function agentMetric(name: string, match: RegExp): Promise<number> {
  const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-node-2`, 'curl', '-s', 'http://127.0.0.1:15020/metrics']);
  let sum = 0;
  for (const line of r.stdout.split('\n')) if (line.startsWith(`${name}{`) && match.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

const service = (ns: string, name: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] },
});
const backendPod = (name: string, app: string, code = 200) => pod(A, name, [process.execPath, SERVER, name, String(code)], { node: 'node-1', port: 8080, labels: { app } });
const httpRoute = (ns: string, name: string, parent: { name: string; namespace?: string }, rules: object[]) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: ns },
  spec: { parentRefs: [{ group: '', kind: 'Service', port: 80, ...parent }], rules },
});
const ref = (name: string, weight?: number, namespace?: string) => ({ name, port: 80, ...(weight !== undefined ? { weight } : {}), ...(namespace ? { namespace } : {}) });

let webIP = '';
let flakyIP = '';
const clientA: [string, string] = [A, 'client-a'];
const clientB: [string, string] = [B, 'client-b'];

t.before(async () => {
  const r = await pg.up(2);
  if (r.code !== 0) throw new Error(`weft dev up failed: ${r.stderr}`);
  status = await pg.status();
  t.comment(`${pg.name}: ${pg.runtime} nodes`);
  const crdDir = join(REPO, 'helm/weft/gateway-api/experimental');
  for (const f of readdirSync(crdDir)) {
    const c = await kubectl(['apply', '--server-side', '-f', join(crdDir, f)], undefined, 60_000);
    if (c.code !== 0) throw new Error(`CRD ${f}: ${c.stderr}`);
  }
  await kubectl(['wait', '--for=condition=Established', 'crd/httproutes.gateway.networking.k8s.io', 'crd/referencegrants.gateway.networking.k8s.io', '--timeout=30s'], undefined, 40_000);
  for (const ns of [A, B]) await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'weft.dev/mesh': 'enabled' } } });
  for (const [name, app] of [['web', 'web'], ['stable', 'stable'], ['canary', 'canary'], ['slow', 'slow'], ['flaky', 'flaky']]) await apply(service(A, name as string, app as string));
  await apply(backendPod('web-1', 'web'));
  await apply(backendPod('stable-1', 'stable'));
  await apply(backendPod('canary-1', 'canary'));
  await apply(backendPod('slow-1', 'slow'));
  await apply(backendPod('flaky-ok', 'flaky'));
  await apply(backendPod('flaky-bad', 'flaky', 503));
  // Retry budgets: a Service whose only endpoint answers 503, and a second Service on the same pod.
  for (const name of ['broken', 'broken-alias']) await apply(service(A, name, 'broken'));
  await apply(backendPod('broken-1', 'broken', 503));
  // RequestMirror: a Service to route (its own endpoint is stable-1), and three mirror backends.
  for (const [name, app] of [['mirrored', 'stable'], ['mirror', 'mirror'], ['mirror-slow', 'mirror-slow'], ['mirror-down', 'mirror-down']]) await apply(service(A, name as string, app as string));
  await apply(backendPod('mirror-1', 'mirror'));
  await apply(pod(A, 'mirror-slow-1', [process.execPath, SERVER, 'mirror-slow-1', '200', '3000'], { node: 'node-1', port: 8080, labels: { app: 'mirror-slow' } }));
  // Ready (no probe) but nothing listens on 8080: every connection to it is refused.
  await apply(pod(A, 'mirror-down-1', ['sleep', 'infinity'], { node: 'node-1', labels: { app: 'mirror-down' } }));
  // A mirror whose AccessPolicy refuses client-a (in force before any copy is sent).
  await apply(service(A, 'mirror-guarded', 'mirror-guarded'));
  await apply(backendPod('mirror-guarded-1', 'mirror-guarded'));
  await apply({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'no-copies-from-a', namespace: A },
    spec: { selector: { matchLabels: { app: 'mirror-guarded' } }, action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${A}/sa/default`] }] }] },
  });
  await apply(pod(A, 'client-a', ['sleep', 'infinity'], { node: 'node-2' }));
  await apply(pod(B, 'client-b', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(A, ['--all']);
  await pg.waitReady(B, ['--all']);
  status = await pg.status();
  const ip = async (name: string) => (await kubectl(['-n', A, 'get', 'svc', name, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  webIP = await ip('web');
  flakyIP = await ip('flaky');
  // EndpointSlices of every backend reach node-2's agent before any case counts on them.
  const until = Date.now() + 30_000;
  while ((await curl(clientA, `http://${flakyIP}/`)).code === 'refused' || (await curl(clientA, `http://${webIP}/`)).code !== '200') {
    if (Date.now() > until) throw new Error('services never answered');
    await sleep(200);
  }
});

t.test('a 90/10 split over 2,000 requests lands within ±3 points; the split is per request, not per connection', async (t) => {
  await route(httpRoute(A, 'split', { name: 'web' }, [{ backendRefs: [ref('stable', 90), ref('canary', 10)] }]));
  const c = await count(clientA, `http://${webIP}/`, 2000, 8);
  const canary = (c.pods['canary-1'] ?? 0) / 2000;
  t.equal(c.statuses['200'], 2000, `every request answered 200 (${JSON.stringify(c.statuses)})`);
  t.equal((c.pods['canary-1'] ?? 0) + (c.pods['stable-1'] ?? 0), 2000, 'only the two backends answered, never the parent Service');
  t.ok(Math.abs(canary - 0.1) <= 0.03, `canary share ${(canary * 100).toFixed(1)}% is within 10±3 (${JSON.stringify(c.pods)})`);
  t.ok(c.sockets <= 8, `over at most 8 keep-alive connections (${c.sockets})`);
  const counted = await agentMetric('weft_route_requests_total', /route="HTTPRoute\/rte-a\/split".*backend="rte-a\/canary:80"/);
  t.ok(counted >= (c.pods['canary-1'] ?? 0), `the client's agent counted the canary's requests with route and backend labels (${counted})`);
});

t.test('a header match takes precedence and filters modify request and response headers', async (t) => {
  await route(
    httpRoute(A, 'split', { name: 'web' }, [
      {
        matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-routed', value: 'canary' }], remove: ['x-drop'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-route', value: 'header' }], remove: ['x-backend-header'] } },
        ],
        backendRefs: [ref('canary')],
      },
      { matches: [{ path: { type: 'PathPrefix', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }] },
      { matches: [{ path: { type: 'RegularExpression', value: '/api/v[0-9]+/.*' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/rewritten' } } }], backendRefs: [ref('canary')] },
      { backendRefs: [ref('stable')] },
    ]),
  );
  const h = await curl(clientA, `http://${webIP}/x`, ['-H', 'x-canary: yes', '-H', 'x-drop: 1']);
  t.equal(h.code, '200');
  const got = JSON.parse(h.body) as { pod: string; headers: Record<string, string> };
  t.equal(got.pod, 'canary-1', 'the header match went to the canary');
  t.equal(got.headers['x-routed'], 'canary', 'RequestHeaderModifier set a header');
  t.notOk('x-drop' in got.headers, 'RequestHeaderModifier removed one');
  t.match(h.headers, /x-route: header/, 'ResponseHeaderModifier added a header');
  t.notMatch(h.headers, /x-backend-header/, 'ResponseHeaderModifier removed one');
  const plain = await count(clientA, `http://${webIP}/x`, 50, 2);
  t.same(plain.pods, { 'stable-1': 50 }, 'without the header: the catch-all rule');
  const redirect = await curl(clientA, `http://${webIP}/old/page?q=1`);
  t.equal(redirect.code, '301', 'RequestRedirect');
  t.match(redirect.headers, new RegExp(`location: http://${webIP.replace(/\./g, '\\.')}/new/page\\?q=1`), 'the prefix was replaced, host and query kept');
  const rewrite = await curl(clientA, `http://${webIP}/api/v2/thing`);
  t.equal((JSON.parse(rewrite.body) as { path: string }).path, '/rewritten', 'URLRewrite replaced the path the backend saw');
});

t.test('timeouts.request fires: 504 and counted', async (t) => {
  const before = await agentMetric('weft_route_timeouts_total', /route="HTTPRoute\/rte-a\/slow"/);
  await route(httpRoute(A, 'slow', { name: 'slow' }, [{ timeouts: { request: '300ms' }, backendRefs: [ref('slow')] }]));
  const slowIP = (await kubectl(['-n', A, 'get', 'svc', 'slow', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const started = Date.now();
  const r = await curl(clientA, `http://${slowIP}/delay/3000`);
  const took = Date.now() - started;
  t.equal(r.code, '504', 'the route timed out');
  t.ok(took < 2000, `well before the backend answered (${took} ms)`);
  t.equal((await curl(clientA, `http://${slowIP}/delay/10`)).code, '200', 'a fast request still passes');
  t.ok((await agentMetric('weft_route_timeouts_total', /route="HTTPRoute\/rte-a\/slow"/)) > before, 'the timeout was counted');
});

t.test("a retry turns one endpoint's 503 into a 200, and is counted", async (t) => {
  // Negative control: without the retry, the bad endpoint's 503s reach the client.
  await route(httpRoute(A, 'flaky', { name: 'flaky' }, [{ backendRefs: [ref('flaky')] }]));
  const without = await count(clientA, `http://${flakyIP}/`, 200, 4);
  t.ok((without.statuses['503'] ?? 0) > 20, `without retry, 503s arrive (${JSON.stringify(without.statuses)})`);
  const before = await agentMetric('weft_route_retries_total', /route="HTTPRoute\/rte-a\/flaky".*reason="503"/);
  await route(httpRoute(A, 'flaky', { name: 'flaky' }, [{ retry: { codes: [503], attempts: 2, backoff: '10ms' }, backendRefs: [ref('flaky')] }]));
  const withRetry = await count(clientA, `http://${flakyIP}/`, 200, 4);
  t.same(withRetry.statuses, { 200: 200 }, 'with retry, every request ends 200');
  t.same(Object.keys(withRetry.pods), ['flaky-ok'], 'answered by the good endpoint');
  const retries = (await agentMetric('weft_route_retries_total', /route="HTTPRoute\/rte-a\/flaky".*reason="503"/)) - before;
  t.ok(retries > 20 && retries <= 200, `the retries were counted (${retries})`);
});

t.test('XBackendTrafficPolicy: its retry budget bounds the retries to its Service across routes; a refused retry answers 503; status per target', async (t) => {
  const exhausted = () => agentMetric('weft_route_retry_budget_exhausted_total', /route="HTTPRoute\/rte-a\/broken(-alias)?"/);
  const retried = () => agentMetric('weft_route_retries_total', /route="HTTPRoute\/rte-a\/broken(-alias)?"/);
  const ip = async (name: string) => (await kubectl(['-n', A, 'get', 'svc', name, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const brokenURL = `http://${await ip('broken')}/`;
  const aliasURL = `http://${await ip('broken-alias')}/`;
  // Two routes, each on its own parent, both sending to Service broken, each retrying a 503 once.
  const retryOnce = [{ retry: { codes: [503], attempts: 1 }, backendRefs: [ref('broken')] }];
  await route(httpRoute(A, 'broken', { name: 'broken' }, retryOnce));
  await route(httpRoute(A, 'broken-alias', { name: 'broken-alias' }, retryOnce));

  // Control: Weft's default budget (per rule, 100 retries to start with) retries every request.
  let r0 = await retried();
  const e0 = await exhausted();
  const free = await count(clientA, brokenURL, 30, 3);
  t.same(free.statuses, { 503: 30 }, "without a policy every request is retried and ends with the retry's 503");
  t.equal((await retried()) - r0, 30, 'every request retried');
  t.equal((await exhausted()) - e0, 0, 'none refused');

  // One retry an hour: percent 0, and a floor of 1 per 1h.
  const policy = (name: string, targets: string[], retryConstraint: object) => ({
    apiVersion: 'gateway.networking.x-k8s.io/v1alpha1',
    kind: 'XBackendTrafficPolicy',
    metadata: { name, namespace: A },
    spec: { targetRefs: targets.map((n) => ({ group: '', kind: 'Service', name: n })), retryConstraint },
  });
  await kubectl(['wait', '--for=condition=Established', 'crd/xbackendtrafficpolicies.gateway.networking.x-k8s.io', '--timeout=30s'], undefined, 40_000);
  await apply(policy('tight', ['broken'], { budget: { percent: 0, interval: '1h' }, minRetryRate: { count: 1, interval: '1h' } }));
  const ancestors = async (name: string): Promise<string[]> => {
    const r = await kubectl(['-n', A, 'get', 'xbackendtrafficpolicy', name, '-o', 'json']);
    const st = (JSON.parse(r.stdout || '{}') as { status?: { ancestors?: { ancestorRef: { name: string }; controllerName: string; conditions: { type: string; status: string; reason: string; message: string }[] }[] } }).status;
    return (st?.ancestors ?? []).filter((a) => a.controllerName === 'weft.dev/mesh-controller').map((a) => `${a.ancestorRef.name} ${a.conditions.map((c) => `${c.type}=${c.status} ${c.reason}: ${c.message}`).join(', ')}`);
  };
  const statusIs = async (name: string, want: RegExp[]): Promise<string[]> => {
    let got: string[] = [];
    for (const until = Date.now() + 30_000; Date.now() < until; await sleep(200)) {
      got = await ancestors(name);
      if (got.length === want.length && want.every((w, i) => w.test(got[i] ?? ''))) break;
    }
    return got;
  };
  t.match(await statusIs('tight', [/^broken Accepted=True Accepted/]), [/^broken Accepted=True Accepted: retry budget in force for Service rte-a\/broken/], 'Accepted for its Service');
  // Until node-2's agent has the budget in both routes (a policy leaves the routes' generations as they were).
  const budgets = async () => {
    const r = await sh('ip', ['netns', 'exec', `wpg-${pg.name}-node-2`, 'curl', '-s', 'http://127.0.0.1:15000/routes']);
    const routes = JSON.parse(r.stdout || '[]') as { key: string; rules: { backends: { retryBudget?: { policy: string } }[] }[] }[];
    return routes.filter((x) => /broken/.test(x.key)).map((x) => x.rules[0]?.backends[0]?.retryBudget?.policy ?? 'none');
  };
  for (const until = Date.now() + 30_000; (await budgets()).join() !== `${A}/tight,${A}/tight`; await sleep(200)) if (Date.now() > until) throw new Error(`node-2's agent never got the budget: ${JSON.stringify(await budgets())}`);

  const check = await weft(['route', 'check', `${A}/client-a`, `http://broken.${A}/`, '-o', 'json', '--name', pg.name]);
  t.same((JSON.parse(check.stdout || '{}') as { backends?: { retryBudget?: { policy: string } }[] }).backends?.map((b) => b.retryBudget?.policy), [`${A}/tight`], `weft route check names the budget in force (${check.stderr})`);
  r0 = await retried();
  const e1 = await exhausted();
  const first = await curl(clientA, brokenURL);
  t.equal(first.code, '503', 'the first request is retried (the one retry of the hour), and ends 503');
  t.equal((await retried()) - r0, 1, 'one retry');
  const tight = await count(clientA, brokenURL, 20, 2);
  const alias = await count(clientA, aliasURL, 20, 2);
  t.same([tight.statuses, alias.statuses], [{ 503: 20 }, { 503: 20 }], 'the rest answer 503');
  t.equal((await retried()) - r0, 1, 'and none of them was retried, through either route: the budget is the Service\'s');
  t.equal((await exhausted()) - e1, 40, 'each refused retry counted');
  const body = (await curl(clientA, aliasURL)).body;
  t.match(body, /retry budget exhausted/, "the 503 is the agent's own, saying why");

  // A second policy on the same Service is Conflicted; its missing target is TargetNotFound.
  await apply(policy('loose', ['broken', 'gone'], { budget: { percent: 100 } }));
  t.match(await statusIs('loose', [/^broken Accepted=False Conflicted/, /^gone Accepted=False TargetNotFound/]), [/XBackendTrafficPolicy rte-a\/tight is older/, /Service rte-a\/gone not found/], 'Conflicted, naming the policy in force; TargetNotFound');
  // Once the older one goes, the newer is in force: retries come back.
  await kubectl(['-n', A, 'delete', 'xbackendtrafficpolicy', 'tight']);
  t.match(await statusIs('loose', [/^broken Accepted=True/, /^gone Accepted=False TargetNotFound/]), [/^broken Accepted=True/, /TargetNotFound/], 'the remaining policy is Accepted');
  for (const until = Date.now() + 30_000; (await budgets()).join() !== `${A}/loose,${A}/loose`; await sleep(200)) if (Date.now() > until) throw new Error(`node-2's agent never got the new budget: ${JSON.stringify(await budgets())}`);
  r0 = await retried();
  const loose = await count(clientA, aliasURL, 20, 2);
  t.same(loose.statuses, { 503: 20 }, "each request again ends with its retry's 503");
  t.equal((await retried()) - r0, 20, 'every one retried');
  await kubectl(['-n', A, 'delete', 'xbackendtrafficpolicy', 'loose']);
});

t.test('a consumer route applies only to its own namespace, and needs no ReferenceGrant for the producer\'s Services', async (t) => {
  await route(httpRoute(A, 'split', { name: 'web' }, [{ backendRefs: [ref('stable')] }]));
  // A backend that does not exist first: still accepted, and its share answers 500.
  const broken = httpRoute(B, 'mine', { name: 'web', namespace: A }, [{ backendRefs: [ref('nosuch', 1, A)] }]);
  await apply(broken);
  const refused = await settled(B, 'mine');
  t.equal(refused.ResolvedRefs?.status, 'False');
  t.equal(refused.ResolvedRefs?.reason, 'BackendNotFound', refused.ResolvedRefs?.message ?? '');
  t.equal(refused.Accepted?.status, 'True', 'still accepted: its backend answers 500 instead');
  await route(broken);
  t.equal((await curl(clientB, `http://${webIP}/`)).code, '500', 'the missing backend answers 500');
  // GEP-1294: mesh routes reach other namespaces' Services without a ReferenceGrant (the routed
  // request carries the client's own identity; the AccessPolicy case below shows it still counts).
  const consumer = httpRoute(B, 'mine', { name: 'web', namespace: A }, [{ backendRefs: [ref('canary', 1, A)] }]);
  await route(consumer);
  const resolved = await settled(B, 'mine');
  t.equal(resolved.ResolvedRefs?.status, 'True', `resolved without a grant: ${resolved.ResolvedRefs?.message ?? ''}`);
  let b = await count(clientB, `http://${webIP}/`, 100, 4);
  for (let i = 0; i < 50 && b.pods['canary-1'] !== 100; i++) {
    await sleep(200);
    b = await count(clientB, `http://${webIP}/`, 100, 4);
  }
  t.same(b.pods, { 'canary-1': 100 }, "the consumer namespace's client follows its own route");
  const a = await count(clientA, `http://${webIP}/`, 100, 4);
  t.same(a.pods, { 'stable-1': 100 }, "the producer namespace's client does not see it");
  const described = await kubectl(['-n', B, 'describe', 'httproute', 'mine']);
  t.match(described.stdout, /Controller Name:\s+weft\.dev\/mesh-controller/, 'kubectl describe names the controller');
  t.match(described.stdout, /Reason:\s+ResolvedRefs/, 'and the reason');
  await kubectl(['-n', B, 'delete', 'httproute', 'mine']);
});

t.test('weft route check names the rule and the backends the client agent uses', async (t) => {
  await route(httpRoute(A, 'split', { name: 'web' }, [{ name: 'canary-header', matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [ref('canary')] }, { backendRefs: [ref('stable', 90), ref('canary', 10)] }]));
  const ask = async (args: string[]) => {
    const r = await weft(['route', 'check', `${A}/client-a`, `http://web.${A}/x`, '-o', 'json', '--name', pg.name, ...args]);
    t.equal(r.code, 0, `weft route check exits 0 (${r.stderr})`);
    return JSON.parse(r.stdout) as { outcome: string; route: string; rule: string; backends: { backend: string; share: number; readyEndpoints: number }[] };
  };
  const header = await ask(['-H', 'x-canary: yes']);
  t.equal(header.route, `HTTPRoute/${A}/split`);
  t.equal(header.rule, 'canary-header');
  t.same(header.backends.map((b) => [b.backend, b.readyEndpoints]), [[`${A}/canary:80`, 1]]);
  const h = await curl(clientA, `http://${webIP}/x`, ['-H', 'x-canary: yes']);
  t.equal((JSON.parse(h.body) as { pod: string }).pod, 'canary-1', 'and the agent sends it there');
  const plain = await ask([]);
  t.same(plain.backends.map((b) => [b.backend, b.share]), [[`${A}/stable:80`, 90], [`${A}/canary:80`, 10]]);
  const other = await weft(['route', 'check', B, `http://web.${A}/x`, '-o', 'json', '--name', pg.name]);
  t.equal((JSON.parse(other.stdout) as { routes: { kind: string } }).routes.kind, 'producer', "another namespace without its own route gets the producer's");
});

t.test("AccessPolicy still decides at the destination, on the routed client's own identity", async (t) => {
  await route(httpRoute(A, 'split', { name: 'web' }, [{ backendRefs: [ref('canary')] }]));
  await apply({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'no-secret', namespace: A },
    spec: { selector: { matchLabels: { app: 'canary' } }, action: 'DENY', rules: [{ from: [{ identities: [`spiffe://cluster.local/ns/${A}/sa/default`] }], to: [{ paths: ['/secret'] }] }] },
  });
  await policyProgrammed(A, 'no-secret');
  t.equal((await curl(clientA, `http://${webIP}/secret`)).code, '403', "the canary's agent denied the routed request from client-a's identity");
  t.equal((await curl(clientA, `http://${webIP}/open`)).code, '200', 'other paths pass');
  await kubectl(['-n', A, 'delete', 'accesspolicy', 'no-secret']);
});

t.test('a route change takes effect for the next request on an already-open keep-alive connection', async (t) => {
  await route(httpRoute(A, 'split', { name: 'web' }, [{ backendRefs: [ref('stable')] }]));
  const child = inPod(clientA, [process.execPath, CLIENT, 'keepalive', `http://${webIP}/`, '6000', '100'], 30_000);
  await sleep(2000);
  await route(httpRoute(A, 'split', { name: 'web' }, [{ backendRefs: [ref('canary')] }]));
  const out = await child;
  const lines = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { t: number; pod: string; status: number; localPort: number });
  t.ok(lines.length > 20, `${lines.length} requests`);
  t.equal(new Set(lines.map((l) => l.localPort)).size, 1, 'all on one connection');
  t.equal(lines[0]?.pod, 'stable-1', 'first on the old route');
  t.equal(lines.at(-1)?.pod, 'canary-1', 'last on the new route');
  const switchedAt = lines.findIndex((l) => l.pod === 'canary-1');
  t.ok(lines.slice(switchedAt).every((l) => l.pod === 'canary-1'), 'and never back');
  t.ok(lines.every((l) => l.status === 200), 'no request failed across the change');
});

t.test('RequestMirror: the mirror backend gets copies (headers, path, body) at the share asked; a slow, refusing or overloaded mirror never touches the primary', async (t) => {
  const mirroredIP = (await kubectl(['-n', A, 'get', 'svc', 'mirrored', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const mirrorPodIP = (await kubectl(['-n', A, 'get', 'pod', 'mirror-1', '-o', 'jsonpath={.status.podIP}'])).stdout.trim();
  type Seen = { method: string; path: string; headers: Record<string, string>; bodyLength: number; body: string }[];
  // Read from the mirror pod directly (a pod IP: the L4 path, no route involved).
  const seen = async (): Promise<Seen> => JSON.parse((await inPod(clientA, ['curl', '-s', '-m', '5', `http://${mirrorPodIP}:8080/__seen`], 10_000)).stdout) as Seen;
  const mirrorMetric = (backend: string, result: string, reason = '') => agentMetric('weft_route_mirror_requests_total', new RegExp(`mirror_backend="rte-a/${backend}:80",result="${result}",reason="${reason}"`));
  const mirror = (name: string, extra: object = {}) => ({ type: 'RequestMirror', requestMirror: { backendRef: { name, port: 80 }, ...extra } });

  await route(
    httpRoute(A, 'mirrored', { name: 'mirrored' }, [
      { matches: [{ path: { type: 'PathPrefix', value: '/pct' } }], filters: [mirror('mirror', { percent: 50 })], backendRefs: [ref('stable')] },
      { matches: [{ path: { type: 'PathPrefix', value: '/bad' } }], filters: [mirror('mirror-slow'), mirror('mirror-down')], backendRefs: [ref('stable')] },
      { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-routed', value: 'yes' }] } }, mirror('mirror')], backendRefs: [ref('stable')] },
    ]),
  );
  t.equal((await settled(A, 'mirrored')).ResolvedRefs?.status, 'True', 'the mirror backendRefs resolved');
  let programmed = (await settled(A, 'mirrored'))['weft.dev/Programmed'];
  for (let i = 0; i < 100 && programmed?.status !== 'True'; i++) {
    await sleep(200);
    programmed = (await settled(A, 'mirrored'))['weft.dev/Programmed'];
  }
  t.equal(programmed?.status, 'True', programmed?.message ?? 'no weft.dev/Programmed condition');
  t.match(programmed?.message, /in force on ([2-9])\/\1 nodes/, 'the route counts the nodes that have it programmed (clients and backends are on two nodes)');

  // A copy of a POST: method, path and query, the client's headers and the rule's, the body.
  const sentBefore = await mirrorMetric('mirror', 'sent');
  const post = await curl(clientA, `http://${mirroredIP}/copy/me?q=1`, ['-X', 'POST', '-H', 'x-test: mirrored', '--data-binary', 'hello mirror']);
  t.equal(post.code, '200', 'the primary answered');
  t.equal((JSON.parse(post.body) as { pod: string }).pod, 'stable-1', 'by the route\'s backend, not the mirror');
  let copies: Seen = [];
  for (let i = 0; i < 50 && copies.length === 0; i++) {
    copies = (await seen()).filter((s) => s.path === '/copy/me?q=1');
    if (copies.length === 0) await sleep(100);
  }
  t.equal(copies.length, 1, 'the mirror backend got one copy');
  t.equal(copies[0]?.method, 'POST');
  t.equal(copies[0]?.headers['x-test'], 'mirrored', "the client's header");
  t.equal(copies[0]?.headers['x-routed'], 'yes', "the rule's RequestHeaderModifier applied to the copy too");
  t.equal(copies[0]?.body, 'hello mirror', 'the body');
  t.ok((await mirrorMetric('mirror', 'sent')) > sentBefore, 'counted as sent');

  // A body over 64 KiB: the primary gets it whole, no copy is sent, and the drop is counted.
  const bigBefore = await mirrorMetric('mirror', 'dropped', 'body_too_large');
  const big = await sh('nsenter', [`--net=${netnsOf(...clientA)}`, '--', 'curl', '-s', '-m', '10', '-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '@-', `http://${mirroredIP}/big`], { input: 'x'.repeat(100 * 1024), timeoutMs: 15_000 });
  t.equal(big.stdout, '200', 'a 100 KiB POST passes');
  t.equal((await mirrorMetric('mirror', 'dropped', 'body_too_large')) - bigBefore, 1, 'its copy is dropped and counted');
  t.notOk((await seen()).some((s) => s.path === '/big'), 'and never reached the mirror');

  // percent: 50 over 2,000 requests (one standard deviation is 1.1 points; 5 points is 4.5 of them).
  const pct = await count(clientA, `http://${mirroredIP}/pct`, 2000, 8);
  t.same(pct.statuses, { 200: 2000 }, 'every primary request answered 200');
  let mirrored = 0;
  for (let i = 0, last = -1; i < 50 && mirrored !== last; i++) {
    last = mirrored;
    await sleep(200);
    mirrored = (await seen()).filter((s) => s.path === '/pct').length;
  }
  t.ok(Math.abs(mirrored / 2000 - 0.5) <= 0.05, `percent: 50 mirrored ${(mirrored / 20).toFixed(1)}% (within 50±5)`);

  // A mirror that answers after 3 s and one that refuses every connection, on every request.
  const single = await inPod(clientA, ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', `http://${mirroredIP}/bad/one`], 10_000);
  const [code, secs] = single.stdout.split(' ');
  t.equal(code, '200', 'the primary answered');
  t.ok(Number(secs) < 1, `without waiting for the slow mirror (${secs} s)`);
  const limitBefore = await mirrorMetric('mirror-slow', 'dropped', 'limit');
  const started = Date.now();
  const bad = await count(clientA, `http://${mirroredIP}/bad/many`, 400, 8);
  const took = Date.now() - started;
  t.same(bad.statuses, { 200: 400 }, 'every primary request answered 200');
  t.same(bad.pods, { 'stable-1': 400 }, 'by the primary backend');
  t.ok(took < 30_000, `400 requests in ${took} ms: the 3 s mirror did not hold them (it would take over 150 s)`);
  t.ok((await mirrorMetric('mirror-slow', 'dropped', 'limit')) > limitBefore, 'copies beyond the agent\'s limit in flight were dropped and counted');
  const downFailed = (await mirrorMetric('mirror-down', 'failed', 'connect')) + (await mirrorMetric('mirror-down', 'failed', 'refused')) + (await mirrorMetric('mirror-down', 'failed', 'reset'));
  t.ok(downFailed > 0, `copies to the refusing mirror were counted as failed (${downFailed})`);
  await sleep(3500);
  t.ok((await mirrorMetric('mirror-slow', 'sent')) > 0, 'the slow mirror did get its copies, late');
});

t.test("RequestMirror: the mirror backend's AccessPolicy judges the copy on the client's own identity", async (t) => {
  await policyProgrammed(A, 'no-copies-from-a');
  const mirroredIP = (await kubectl(['-n', A, 'get', 'svc', 'mirrored', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const guardedIP = (await kubectl(['-n', A, 'get', 'pod', 'mirror-guarded-1', '-o', 'jsonpath={.status.podIP}'])).stdout.trim();
  const refused = () => agentMetric('weft_route_mirror_requests_total', /mirror_backend="rte-a\/mirror-guarded:80",result="failed",reason="refused"/);
  await route(
    httpRoute(A, 'mirrored', { name: 'mirrored' }, [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'mirror-guarded', port: 80 } } }], backendRefs: [ref('stable')] }]),
  );
  const before = await refused();
  const c = await count(clientA, `http://${mirroredIP}/guarded`, 20, 2);
  t.same(c.statuses, { 200: 20 }, 'the primary requests pass (the policy guards the mirror only)');
  let n = 0;
  for (let i = 0; i < 50 && n < 20; i++) {
    n = (await refused()) - before;
    if (n < 20) await sleep(100);
  }
  t.equal(n, 20, "every copy was refused at the mirror's node, on client-a's identity, and counted");
  // Read by client-b: another identity, which the policy lets through.
  const seen = JSON.parse((await inPod(clientB, ['curl', '-s', '-m', '5', `http://${guardedIP}:8080/__seen`], 10_000)).stdout) as { path: string }[];
  t.notOk(
    seen.some((s) => s.path === '/guarded'),
    'no copy reached the guarded mirror',
  );
  await kubectl(['-n', A, 'delete', 'accesspolicy', 'no-copies-from-a']);
});
