// End to end: hostile clients against an inspected port, through an HBONE tunnel across nodes
// (the path on which one malformed request used to kill the destination node's agent). Every
// case is sent from a meshed pod on node-2 to a server on node-1 whose HTTP the agent inspects
// under a DENY policy; afterwards no Weft process may have restarted, and a good request must
// still work. The policy cases check that what policy evaluates is what the backend receives.
import t from 'tap';
import { join } from 'node:path';
import { Playground, REPO, pod, sh, uniqueName, type DevStatusJson } from './helpers/playground.ts';

const pg = new Playground(uniqueName('ho'));
t.teardown(async () => {
  await pg.down();
});

const NS = 'hostile';
let status: DevStatusJson;
let serverIP = '';
let clientNetns = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the hostile client in the client pod; returns case → outcome. */
async function send(...cases: string[]): Promise<Record<string, string>> {
  const r = await sh('nsenter', [`--net=${clientNetns}`, '--', process.execPath, join(REPO, 'tests/helpers/hostile-client.ts'), serverIP, '8080', '8081', ...cases], { timeoutMs: 120_000 });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const { case: c, outcome } = JSON.parse(line) as { case: string; outcome: string };
    out[c] = outcome;
  }
  if (Object.keys(out).length !== cases.length) throw new Error(`hostile client: ${r.stdout}\n${r.stderr}`);
  return out;
}

/** Weft's processes and their host pids: a restart (the supervisor's, or the kubelet's of a container) shows as a changed pid. */
async function weftPids(): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const n of status.nodes) out[`weft-agent/${n.name}`] = (await pg.weftPids('agent', n.name)).sort();
  out['weft-controller'] = (await pg.weftPids('controller')).sort();
  return out;
}

async function programmed(name: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const r = await pg.kubectl(['-n', NS, 'get', 'accesspolicy', name, '-o', 'json']);
    const p = JSON.parse(r.stdout || '{}') as { metadata?: { generation?: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] } };
    if (p.status?.observedGeneration === p.metadata?.generation && p.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True')) return;
    await sleep(200);
  }
  throw new Error(`AccessPolicy ${NS}/${name} was not programmed`);
}

t.before(async () => {
  status = await pg.start(2);
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  const server = pod(NS, 'server', [process.execPath, join(REPO, 'tests/helpers/policy-server.ts')], { node: 'node-1' }) as {
    spec: { containers: Record<string, unknown>[] };
  };
  const c = server.spec.containers[0] as Record<string, unknown>;
  c.ports = [
    { name: 'web', containerPort: 8080 },
    { name: 'h2c', containerPort: 8081 },
  ];
  c.readinessProbe = { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 };
  await pg.apply(server);
  await pg.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'server', namespace: NS },
    spec: {
      selector: { app: 'server' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'h2c', port: 81, targetPort: 8081, appProtocol: 'http2' },
      ],
    },
  });
  await pg.apply(pod(NS, 'client', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(NS, ['--all']);
  await pg.apply({
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'deny-bad', namespace: NS },
    spec: {
      selector: { matchLabels: { app: 'server' } },
      action: 'DENY',
      rules: [
        { name: 'admin', to: [{ paths: ['/admin', '/admin/*'] }] },
        { name: 'evil-host', to: [{ hosts: ['evil.example'] }] },
        { name: 'evil-token', to: [{ headers: [{ name: 'authorization', values: ['Bearer evil'] }] }] },
      ],
    },
  });
  await programmed('deny-bad');
  status = await pg.status();
  serverIP = status.pods.find((p) => p.namespace === NS && p.name === 'server')?.ip ?? '';
  clientNetns = status.pods.find((p) => p.namespace === NS && p.name === 'client')?.netnsPath ?? '';
  if (!status.pods.filter((p) => p.namespace === NS).every((p) => p.meshed)) throw new Error('the suite pods are not meshed');
  await sleep(1000); // the Service's endpoints (which make 8080 an HTTP port) reach the agents
});

t.test('controls: the good request passes and the policy denies what it names', async (t) => {
  const r = await send('good', 'single-authorization-evil', 'host-evil');
  t.equal(r.good, 'status 200', 'a good request passes');
  t.equal(r['single-authorization-evil'], 'status 403', 'the DENY on the token works');
  t.equal(r['host-evil'], 'status 403', 'the DENY on the host works');
});

t.test('malformed requests and resets at every stage: no Weft process restarts', async (t) => {
  const before = await weftPids();
  t.ok((before['weft-agent/node-1'] ?? []).length > 0 && (before['weft-controller'] ?? []).length > 0, `node-1's agent and the controller are found: ${JSON.stringify(before)}`);
  const cases = ['broken-chunked', 'truncated-chunked', 'truncated-headers', 'reset-during-headers', 'reset-after-headers', 'reset-mid-body', 'fin-mid-body', 'reset-mid-response', 'garbage', 'huge-header', 'cl-and-te'];
  // Twice: a crash-looping agent would survive one round only by luck of timing.
  for (let round = 1; round <= 2; round++) {
    const r = await send(...cases);
    t.match(r['broken-chunked'], /^(status 400|closed|reset)$/, `round ${round}: broken chunked framing is refused (${r['broken-chunked']})`);
    t.match(r['huge-header'], /^(status 431|status 400|closed|reset)$/, `round ${round}: a 200 kB header is refused (${r['huge-header']})`);
    t.match(r['cl-and-te'], /^(status 400|closed|reset)$/, `round ${round}: Content-Length with Transfer-Encoding is refused (${r['cl-and-te']})`);
    t.notMatch(r.garbage, /^status 200$/, `round ${round}: garbage is not served (${r.garbage})`);
    for (const c of cases) t.notMatch(r[c], /^timeout$/, `round ${round}: ${c} is answered or closed, not left hanging`);
    await sleep(1500); // a dying process needs a moment to be noticed and restarted
  }
  t.same(await weftPids(), before, 'no agent and no controller restarted');
  t.equal((await send('good')).good, 'status 200', 'and the node still carries good requests');
});

t.test('policy decides on what the backend receives', async (t) => {
  const r = await send('duplicate-authorization', 'absolute-form-other-host', 'absolute-form-evil-host-header', 'path-param-admin', 'h2-authority-mismatch', 'good');
  t.equal(r['duplicate-authorization'], 'status 400', 'a repeated Authorization header is refused, not evaluated joined');
  t.match(r['absolute-form-other-host'], /^status (400|403)$/, `an absolute-form target naming another host is refused or denied (${r['absolute-form-other-host']})`);
  t.match(r['absolute-form-evil-host-header'], /^status (400|403)$/, `a benign absolute-form target with Host: evil.example is refused or denied (${r['absolute-form-evil-host-header']})`);
  t.match(r['path-param-admin'], /^status (400|403)$/, `/admin;x is /admin to a Tomcat backend: denied (${r['path-param-admin']})`);
  t.notMatch(r['h2-authority-mismatch'], /^status 200$/, `:authority and host disagreeing is malformed (${r['h2-authority-mismatch']})`);
  t.equal(r.good, 'status 200');
});

t.test('a request head that trickles in is cut off by the header timeout', async (t) => {
  const started = Date.now();
  const r = await send('slow-headers');
  const seconds = (Date.now() - started) / 1000;
  t.match(r['slow-headers'], /^(status 408|closed|reset)$/, `the agent ends it (${r['slow-headers']})`);
  t.ok(seconds < 25, `within the 10 s header timeout and a margin, not after the 30 s the client would take (${seconds.toFixed(1)} s)`);
});
