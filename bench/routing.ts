// Routed HTTP/1.1 against the same traffic unrouted, on one playground, interleaved:
//   l4       no route, no policy: the client's agent relays bytes (the L4 path);
//   l7       no route, an ALLOW AccessPolicy with an HTTP rule: the destination's agent parses
//            every request (the unrouted L7 path);
//   routed   an HTTPRoute (one backendRef, the Service itself): the client's agent parses each
//            request, chooses an endpoint and opens an upstream HBONE stream for it.
// One client pod on node-2 sends BENCH_REQUESTS keep-alive GETs over BENCH_CONCURRENCY connections
// to a Service whose one pod is on node-1. Per mode and round: requests per second, and CPU
// milliseconds per 1,000 requests of both agents together (from /proc/<pid>/stat around the run;
// the steadiest figure on a shared machine). BENCH_ROUNDS rounds (default 3), order rotating;
// min and median printed with the load average.
//   node bench/routing.ts        (playground BENCH_PLAYGROUND, default "rteb"; torn down after)
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Playground, REPO, pod, sh, type DevStatusJson } from '../tests/helpers/playground.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const NS = 'rteb';
const pg = new Playground(process.env.BENCH_PLAYGROUND ?? 'rteb');
let status: DevStatusJson;

const kubectl = (args: string[], input?: string) => sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });
const apply = async (o: object) => {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(o));
  if (r.code !== 0) throw new Error(r.stderr);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function agentCpuMs(): number {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const w of status.weft.filter((x) => x.process.includes('agent'))) {
    const stat = readFileSync(`/proc/${w.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += ((Number(f[11]) + Number(f[12])) * 1000) / tick;
  }
  return total;
}

async function setMode(mode: string): Promise<void> {
  await kubectl(['-n', NS, 'delete', 'httproute,accesspolicy', '--all', '--wait=true']);
  if (mode === 'routed') {
    await apply({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: NS }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } });
  }
  if (mode === 'l7') {
    await apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'p', namespace: NS }, spec: { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ to: [{ methods: ['GET'] }] }] } });
  }
  // Let both agents take the change (routes and policies reach them within a second here).
  await sleep(3000);
}

async function run(): Promise<{ rps: number; cpuPer1k: number; ok: number }> {
  const netns = status.pods.find((p) => p.namespace === NS && p.name === 'client')?.netns ?? '';
  const ip = (await kubectl(['-n', NS, 'get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  const cpu0 = agentCpuMs();
  const t0 = performance.now();
  const r = await sh('ip', ['netns', 'exec', netns, process.execPath, join(REPO, 'tests/helpers/route-client.ts'), 'count', `http://${ip}/`, String(REQUESTS), String(CONCURRENCY)], { timeoutMs: 300_000 });
  const secs = (performance.now() - t0) / 1000;
  const cpu = agentCpuMs() - cpu0;
  const c = JSON.parse(r.stdout) as { statuses: Record<string, number> };
  return { rps: REQUESTS / secs, cpuPer1k: (cpu / REQUESTS) * 1000, ok: c.statuses['200'] ?? 0 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

try {
  const up = await pg.up(2);
  if (up.code !== 0) throw new Error(up.stderr);
  status = await pg.status();
  const crdDir = join(REPO, 'helm/weft/gateway-api/standard');
  for (const f of readdirSync(crdDir)) await kubectl(['apply', '--server-side', '-f', join(crdDir, f)]);
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] } });
  await apply(pod(NS, 'web-1', [process.execPath, join(REPO, 'tests/helpers/route-server.ts'), 'web-1'], { node: 'node-1', port: 8080, labels: { app: 'web' } }));
  await apply(pod(NS, 'client', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(NS, ['--all']);
  status = await pg.status();
  const modes = ['l4', 'l7', 'routed'];
  const results: Record<string, { rps: number[]; cpu: number[] }> = Object.fromEntries(modes.map((m) => [m, { rps: [], cpu: [] }]));
  const loads: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = modes.map((_, i) => modes[(i + round) % modes.length] as string);
    for (const mode of order) {
      await setMode(mode);
      const r = await run();
      if (r.ok !== REQUESTS) throw new Error(`${mode}: only ${r.ok} of ${REQUESTS} answered 200`);
      results[mode]?.rps.push(r.rps);
      results[mode]?.cpu.push(r.cpuPer1k);
      loads.push(readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '));
      process.stderr.write(`round ${round + 1} ${mode}: ${r.rps.toFixed(0)} req/s, ${r.cpuPer1k.toFixed(0)} agent CPU ms / 1k requests\n`);
    }
  }
  console.log(`${REQUESTS} GETs, ${CONCURRENCY} keep-alive connections, client node-2 → Service pod node-1, ${ROUNDS} rounds`);
  console.log('mode     req/s min  median   agent CPU ms/1k req min  median');
  for (const m of modes) {
    const r = results[m] as { rps: number[]; cpu: number[] };
    console.log(`${m.padEnd(8)} ${Math.min(...r.rps).toFixed(0).padStart(10)} ${median(r.rps).toFixed(0).padStart(7)}   ${Math.min(...r.cpu).toFixed(0).padStart(24)} ${median(r.cpu).toFixed(0).padStart(7)}`);
  }
  console.log(`load averages: ${loads.join(' | ')}`);
} finally {
  await pg.down();
}
