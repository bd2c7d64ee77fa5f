// Routed HTTP/1.1 against the same traffic unrouted, without the mesh, and through HAProxy doing the
// same split, on one playground, interleaved:
//   direct   no mesh: the unmeshed client → an unmeshed backend pod (the baseline of "added");
//   l4       no route, no policy: the client's agent relays bytes over mTLS (the L4 path);
//   l7       no route, an ALLOW AccessPolicy with an HTTP rule: the destination's agent parses
//            every request (the unrouted L7 path);
//   routed   an HTTPRoute splitting Service web 90/10 over Services web-a and web-b: the client's
//            agent parses each request, picks a backend by weight, then an endpoint, and opens an
//            upstream HBONE stream for it;
//   haproxy  Debian's HAProxy, one thread, in the unmeshed client pod's network namespace (where
//            the client's agent sits logically), splitting 90/10 over the unmeshed web-a and web-b
//            pods with keep-alive to both. Plaintext and one proxy: the reference for what an HTTP
//            router costs, not for what Weft's mTLS path through two agents must cost.
// Pods: web-a-1 and web-b-1 on node-1, a client on node-2, once in a meshed namespace and once in
// an unmeshed one that no agent touches. Per mode and round:
//   latency      fortio, BENCH_ROUTE_QPS (200) requests/s over 4 keep-alive connections for
//                BENCH_ROUTE_SECONDS (10), well below saturation (not bench/run.ts's BENCH_QPS: its
//                1000 would saturate the L7 paths here), 10 µs histogram buckets (fortio's default
//                of 1 ms would swallow the differences); p50 and p99, and "added" = mode − direct of
//                the same round;
//   throughput   closed loop, BENCH_REQUESTS (3000) GETs over BENCH_CONCURRENCY (8) keep-alive
//                connections (tests/helpers/route-client.ts): requests/s, and the proxies' CPU from
//                /proc/<pid>/stat around it (both agents for Weft, haproxy for haproxy), as CPU ms
//                per 1,000 requests and requests per second per proxy core (requests ÷ CPU seconds;
//                the steadiest figures on a shared machine).
// BENCH_ROUNDS rounds (default 3), the order rotating each round so that a drift in the machine's
// load favours no mode; min and median per cell, the load average after each round; a markdown
// table on stdout, progress on stderr.
//   node bench/routing.ts        (playground BENCH_PLAYGROUND, default "rteb"; torn down after)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haproxyConfig } from '../agent/l7/bench-client.ts';
import { Playground, REPO, pod, sh, type DevStatusJson } from '../tests/helpers/playground.ts';

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const QPS = Number(process.env.BENCH_ROUTE_QPS ?? 200);
const SECONDS = Number(process.env.BENCH_ROUTE_SECONDS ?? 10);
/** fortio's histogram bucket width in seconds: 10 µs. */
const RESOLUTION = '0.00001';
const NS = 'rteb';
const PLAIN = 'rteb-plain';
const HAPROXY_PORT = 18080;
const pg = new Playground(process.env.BENCH_PLAYGROUND ?? 'rteb');
let status: DevStatusJson;

type Mode = 'direct' | 'l4' | 'l7' | 'routed' | 'haproxy';
const MODES: Mode[] = ['direct', 'l4', 'l7', 'routed', 'haproxy'];
const WEFT_MODES = new Set<Mode>(['l4', 'l7', 'routed']);

const kubectl = (args: string[], input?: string) => sh(status.kubectl, [`--kubeconfig=${status.kubeconfig}`, ...args], { ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });
const apply = async (o: object) => {
  const r = await kubectl(['apply', '-f', '-'], JSON.stringify(o));
  if (r.code !== 0) throw new Error(r.stderr);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const podOf = (ns: string, name: string) => {
  const p = status.pods.find((x) => x.namespace === ns && x.name === name);
  if (!p) throw new Error(`pod ${ns}/${name} not in weft dev status`);
  return p;
};

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime in USER_HZ (100) ticks
}

let haproxy: ChildProcess | undefined;
const proxyPids = (mode: Mode): number[] =>
  mode === 'haproxy' ? [haproxy?.pid ?? 0] : WEFT_MODES.has(mode) ? status.weft.filter((x) => x.process.includes('agent')).map((x) => x.pid) : [];
const proxyCpuMs = (mode: Mode) => proxyPids(mode).reduce((s, pid) => s + cpuMs(pid), 0);

/** Where a mode's client runs and what it asks for. */
function target(mode: Mode, webIP: string): { netns: string; url: string } {
  if (mode === 'direct') return { netns: podOf(PLAIN, 'client').netns, url: `http://${podOf(PLAIN, 'web-a-1').ip}:8080/` };
  if (mode === 'haproxy') return { netns: podOf(PLAIN, 'client').netns, url: `http://127.0.0.1:${HAPROXY_PORT}/` };
  return { netns: podOf(NS, 'client').netns, url: `http://${webIP}/` };
}

async function setMode(mode: Mode): Promise<void> {
  if (!WEFT_MODES.has(mode)) return;
  await kubectl(['-n', NS, 'delete', 'httproute,accesspolicy', '--all', '--wait=true']);
  if (mode === 'routed') {
    await apply({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'split', namespace: NS },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'web-a', port: 80, weight: 90 }, { name: 'web-b', port: 80, weight: 10 }] }] },
    });
  }
  if (mode === 'l7') {
    await apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'p', namespace: NS }, spec: { selector: { matchLabels: { tier: 'web' } }, action: 'ALLOW', rules: [{ to: [{ methods: ['GET'] }] }] } });
  }
  // Let both agents take the change (routes and policies reach them within a second here).
  await sleep(3000);
}

async function count(netns: string, url: string, requests: number): Promise<{ pods: Record<string, number>; statuses: Record<string, number> }> {
  const r = await sh('ip', ['netns', 'exec', netns, process.execPath, join(REPO, 'tests/helpers/route-client.ts'), 'count', url, String(requests), String(CONCURRENCY)], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`route-client in ${netns}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { pods: Record<string, number>; statuses: Record<string, number> };
}

interface Sample {
  p50: number;
  p99: number;
  rps: number;
  cpuPer1k: number;
  perCore: number;
  webB: number;
}

async function measure(mode: Mode, webIP: string, dir: string): Promise<Sample> {
  const { netns, url } = target(mode, webIP);
  await count(netns, url, 200); // connections up, JIT warm, the change taken
  const cpu0 = proxyCpuMs(mode);
  const t0 = performance.now();
  const c = await count(netns, url, REQUESTS);
  const secs = (performance.now() - t0) / 1000;
  const cpu = proxyCpuMs(mode) - cpu0;
  if ((c.statuses['200'] ?? 0) !== REQUESTS) throw new Error(`${mode}: only ${c.statuses['200'] ?? 0} of ${REQUESTS} answered 200 (${JSON.stringify(c.statuses)})`);
  const webB = (c.pods['web-b-1'] ?? 0) / REQUESTS;
  if ((mode === 'routed' || mode === 'haproxy') && Math.abs(webB - 0.1) > 0.03) throw new Error(`${mode}: web-b took ${(webB * 100).toFixed(1)}%, not 10±3 (${JSON.stringify(c.pods)})`);

  const file = join(dir, `${mode}-${Date.now()}.json`);
  const fortio = join(status.kubectl, '..', 'fortio');
  const f = await sh('ip', ['netns', 'exec', netns, fortio, 'load', '-quiet', '-json', file, '-qps', String(QPS), '-c', '4', '-t', `${SECONDS}s`, '-r', RESOLUTION, '-p', '50,99', url], { timeoutMs: (SECONDS + 60) * 1000 });
  if (f.code !== 0) throw new Error(`fortio ${mode}: ${f.stderr}`);
  const j = JSON.parse(readFileSync(file, 'utf8')) as { RetCodes: Record<string, number>; DurationHistogram: { Count: number; Percentiles: { Percentile: number; Value: number }[] } };
  if (j.RetCodes['200'] !== j.DurationHistogram.Count) throw new Error(`fortio ${mode}: not every request answered 200 (${JSON.stringify(j.RetCodes)})`);
  const pct = (p: number) => (j.DurationHistogram.Percentiles.find((x) => x.Percentile === p)?.Value ?? NaN) * 1000;
  return { p50: pct(50), p99: pct(99), rps: REQUESTS / secs, cpuPer1k: (cpu / REQUESTS) * 1000, perCore: cpu > 0 ? REQUESTS / (cpu / 1000) : NaN, webB };
}

async function startHaproxy(dir: string): Promise<void> {
  const ip = (name: string) => podOf(PLAIN, name).ip;
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    haproxyConfig(`127.0.0.1:${HAPROXY_PORT}`, [
      { name: 'web-a-1', address: `${ip('web-a-1')}:8080`, weight: 90 },
      { name: 'web-b-1', address: `${ip('web-b-1')}:8080`, weight: 10 },
    ]),
  );
  // `ip netns exec` execs the command, so the child's pid is HAProxy's own.
  haproxy = spawn('ip', ['netns', 'exec', podOf(PLAIN, 'client').netns, '/usr/sbin/haproxy', '-db', '-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    const r = await sh('ip', ['netns', 'exec', podOf(PLAIN, 'client').netns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${HAPROXY_PORT}/`]);
    if (r.stdout === '200') return;
    await sleep(100);
  }
  throw new Error('haproxy never answered');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const dir = mkdtempSync(join(tmpdir(), 'weft-bench-routing-'));
try {
  const up = await pg.up(2);
  if (up.code !== 0) throw new Error(up.stderr);
  status = await pg.status();
  const crdDir = join(REPO, 'helm/weft/gateway-api/standard');
  for (const f of readdirSync(crdDir)) await kubectl(['apply', '--server-side', '-f', join(crdDir, f)]);
  await kubectl(['wait', '--for=condition=Established', 'crd/httproutes.gateway.networking.k8s.io', '--timeout=30s']);
  for (const ns of [NS, PLAIN]) {
    await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, ...(ns === NS ? { labels: { 'weft.dev/mesh': 'enabled' } } : {}) } });
    for (const [name, selector] of [['web', { tier: 'web' }], ['web-a', { app: 'web-a' }], ['web-b', { app: 'web-b' }]] as const) {
      await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] } });
    }
    for (const name of ['web-a', 'web-b']) {
      await apply(pod(ns, `${name}-1`, [process.execPath, join(REPO, 'tests/helpers/route-server.ts'), `${name}-1`], { node: 'node-1', port: 8080, labels: { app: name, tier: 'web' } }));
    }
    await apply(pod(ns, 'client', ['sleep', 'infinity'], { node: 'node-2' }));
  }
  for (const ns of [NS, PLAIN]) await pg.waitReady(ns, ['--all']);
  status = await pg.status();
  const webIP = (await kubectl(['-n', NS, 'get', 'svc', 'web', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
  await startHaproxy(dir);

  const results = Object.fromEntries(MODES.map((m) => [m, [] as Sample[]])) as Record<Mode, Sample[]>;
  const loads: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = MODES.map((_, i) => MODES[(i + round) % MODES.length] as Mode);
    for (const mode of order) {
      await setMode(mode);
      const s = await measure(mode, webIP, dir);
      results[mode].push(s);
      process.stderr.write(
        `round ${round + 1} ${mode}: p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms, ${s.rps.toFixed(0)} req/s, ${s.cpuPer1k.toFixed(0)} proxy CPU ms/1k, web-b ${(s.webB * 100).toFixed(1)}%, load ${loadavg()}\n`,
      );
    }
    loads.push(loadavg());
  }

  const cell = (xs: number[], digits: number) => (xs.every(Number.isFinite) && xs.length > 0 ? `${Math.min(...xs).toFixed(digits)} / ${median(xs).toFixed(digits)}` : '-');
  const added = (m: Mode, k: 'p50' | 'p99') => results[m].map((s, i) => s[k] - (results.direct[i] as Sample)[k]);
  const LABEL: Record<Mode, string> = {
    direct: 'direct (no mesh)',
    l4: 'Weft L4 (mTLS, 2 agents)',
    l7: 'Weft unrouted L7 (mTLS, 2 agents)',
    routed: 'Weft routed 90/10 (mTLS, 2 agents)',
    haproxy: 'HAProxy 90/10 (plaintext, 1 proxy, 1 thread)',
  };
  console.log(`HTTP/1.1 GETs, client pod on node-2 → backend pods on node-1; ${ROUNDS} interleaved rounds, order rotating; each cell min / median over the rounds.`);
  console.log(`Latency: fortio ${QPS} req/s over 4 keep-alive connections for ${SECONDS} s, 10 µs buckets; added = mode − direct of the same round.`);
  console.log(`Throughput: closed loop, ${REQUESTS} requests over ${CONCURRENCY} keep-alive connections (Node client); proxy CPU = both agents (Weft) or haproxy, from /proc.`);
  console.log('');
  console.log('| path | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | proxy CPU ms / 1k req | req/s per proxy core | to web-b |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const m of MODES) {
    const r = results[m];
    const proxied = m !== 'direct';
    console.log(
      `| ${LABEL[m]} | ${cell(r.map((s) => s.p50), 3)} | ${cell(r.map((s) => s.p99), 3)} | ${proxied ? cell(added(m, 'p50'), 3) : '-'} | ${proxied ? cell(added(m, 'p99'), 3) : '-'} | ${cell(r.map((s) => s.rps), 0)} | ${proxied ? cell(r.map((s) => s.cpuPer1k), 0) : '-'} | ${proxied ? cell(r.map((s) => s.perCore), 0) : '-'} | ${(median(r.map((s) => s.webB)) * 100).toFixed(1)}% |`,
    );
  }
  console.log('');
  console.log(`Load average (1, 5, 15 min) after each round: ${loads.map((l, i) => `round ${i + 1}: ${l}`).join('; ')}`);
} finally {
  haproxy?.kill();
  await pg.down();
  rmSync(dir, { recursive: true, force: true });
}
