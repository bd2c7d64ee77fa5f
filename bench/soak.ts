// Soak: SOAK_MINUTES (default 60) of mixed traffic on a two-node playground, with the agents' and
// the controller's memory and descriptors sampled throughout. A leak shows as a trend, not as a
// level, so the report fits a line through the samples after the warm-up and states its slope.
//
// The traffic, all meshed, all counted:
//   L4     25 held connections to a TCP echo server on node-1, busy (a line every 100 ms), 20 of
//          them tunnelled from node-2 and 5 from node-1 (tests/helpers/held-connections.ts);
//   churn  a new connection every 200 ms from each of those two clients (the holders' probes),
//          and every second HTTP request on a fresh connection;
//   L7     HTTP/1.1 at SOAK_RPS (default 40) from node-2 through an L7 AccessPolicy: /ok must be
//          200 and /deny 403, so a policy that falls open or shut shows as a wrong answer;
//   policy the L7 policy is rewritten every 20 s (a new path each time), and a second policy is
//          created and deleted every minute.
//
// Usage: node bench/soak.ts   (SOAK_MINUTES, SOAK_RPS, SOAK_PLAYGROUND to override)
// Prints a markdown report; exits 1 if any traffic failed, a process restarted, or a series grew.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { deployEchoPods, ECHO_PORT } from '../tests/helpers/echo-pods.ts';
import { Holder, type Report } from '../tests/helpers/holder.ts';
import { Playground, REPO, uniqueName, type DevStatusJson } from '../tests/helpers/playground.ts';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 60);
const RPS = Number(process.env.SOAK_RPS ?? 40);
const SAMPLE_EVERY_MS = 30_000;
/** Samples before this are start-up and first-touch allocation, not a trend. */
const WARMUP_MS = Math.min(5 * 60_000, (MINUTES * 60_000) / 6);
/** A series "grew" if its fitted line rises more than this over the run, after the warm-up. */
const GROWTH_LIMIT = { rssMb: 10, fds: 10 };
const NS = 'soak';
const PROCESSES = ['weft-agent/node-1', 'weft-agent/node-2', 'weft-controller'];

const pg = new Playground(process.env.SOAK_PLAYGROUND ?? uniqueName('sk'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const children: { kill(signal?: NodeJS.Signals): unknown }[] = [];
let stopping = false;

async function cleanup(): Promise<void> {
  stopping = true;
  for (const c of children) c.kill('SIGKILL');
  await pg.down();
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}

function pids(): Record<string, number> {
  return (JSON.parse(readFileSync(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> }).pids;
}

interface Sample {
  atMs: number;
  load: number;
  procs: Record<string, { pid: number; rssMb: number; fds: number }>;
}

function sample(started: number): Sample {
  const all = pids();
  const procs: Sample['procs'] = {};
  for (const name of PROCESSES) {
    const pid = all[name];
    if (!pid) throw new Error(`no ${name} in the playground's state`);
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
    procs[name] = { pid, rssMb: rssKb / 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
  }
  return { atMs: Date.now() - started, load: loadavg()[0] ?? 0, procs };
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

interface HttpReport {
  sent: number;
  ok: number;
  denied: number;
  wrong: number;
  failed: number;
  failures: string[];
}

/** bench/soak-http.ts in a pod's network namespace. */
function httpClient(netns: string, target: string): { child: ChildProcessWithoutNullStreams; report(): Promise<HttpReport> } {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, join(REPO, 'bench/soak-http.ts'), target, String(RPS)]);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const waiting: ((r: HttpReport) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(JSON.parse(line) as HttpReport));
  return {
    child,
    report: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no report from the HTTP client: ${stderr}`)), 10_000);
        waiting.push((r) => (clearTimeout(timer), resolve(r)));
        child.stdin.write('report\n');
      }),
  };
}

const l7Policy = (generation: number) => ({
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'soak', namespace: NS },
  spec: {
    rules: [
      { from: [{ namespaces: [NS] }], to: [{ ports: [ECHO_PORT] }] },
      { from: [{ namespaces: [NS] }], to: [{ ports: [8080], methods: ['GET'], paths: ['/ok', `/generation-${generation}`] }] },
    ],
  },
});

/** A policy that selects nothing the traffic touches: its churn must cost the data path nothing. */
const extraPolicy = {
  apiVersion: 'weft.dev/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'churn', namespace: NS },
  spec: { selector: { matchLabels: { app: 'nobody' } }, rules: [{ from: [{ namespaces: ['elsewhere'] }] }] },
};

async function main(): Promise<number> {
  await pg.start(2);
  const { status, serverIP }: { status: DevStatusJson; serverIP: string } = await deployEchoPods(pg, NS, { far: 'node-2', near: 'node-1', web: 'node-2' });
  await pg.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'server', namespace: NS },
    spec: {
      selector: { app: 'server' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'tcp-echo', port: ECHO_PORT, targetPort: ECHO_PORT },
      ],
    },
  });
  let generation = 0;
  await pg.apply(l7Policy(generation));
  await sleep(3000);
  const netns = (name: string) => status.pods.find((p) => p.namespace === NS && p.name === name)?.netns ?? '';
  const far = new Holder(netns('far'), `${serverIP}:${ECHO_PORT}`, 20);
  const near = new Holder(netns('near'), `${serverIP}:${ECHO_PORT}`, 5);
  children.push(far, near);
  await Promise.all([far.ready(), near.ready()]);
  const web = httpClient(netns('web'), `${serverIP}:8080`);
  children.push(web.child);

  const started = Date.now();
  const samples: Sample[] = [sample(started)];
  let policyChanges = 0;
  const churn = (async () => {
    for (let i = 1; !stopping; i++) {
      await sleep(20_000);
      if (stopping) break;
      await pg.apply(l7Policy(++generation));
      policyChanges++;
      if (i % 3 === 0) {
        await pg.apply(extraPolicy);
        await sleep(1000);
        await pg.kubectl(['-n', NS, 'delete', 'accesspolicy', 'churn', '--wait=false']);
        policyChanges += 2;
      }
    }
  })();
  while (Date.now() - started < MINUTES * 60_000) {
    await sleep(SAMPLE_EVERY_MS);
    samples.push(sample(started));
    const last = samples.at(-1) as Sample;
    process.stderr.write(
      `soak ${(last.atMs / 60_000).toFixed(1)} min, load ${last.load.toFixed(1)}: ` +
        PROCESSES.map((p) => `${p} ${last.procs[p]?.rssMb.toFixed(0)} MB/${last.procs[p]?.fds} fds`).join(', ') +
        '\n',
    );
  }
  stopping = true;
  await churn;
  const held: Record<string, Report> = { far: await far.report(), near: await near.report() };
  const http = await web.report();
  await mkdir(join(REPO, 'bench/results'), { recursive: true });
  await writeFile(join(REPO, 'bench/results/soak.json'), JSON.stringify({ minutes: MINUTES, rps: RPS, samples, held, http, policyChanges }, null, 2));
  return report(samples, held, http, policyChanges);
}

function report(samples: Sample[], held: Record<string, Report>, http: HttpReport, policyChanges: number): number {
  const afterWarmup = samples.filter((s) => s.atMs >= WARMUP_MS);
  const first = afterWarmup[0] as Sample;
  const last = samples.at(-1) as Sample;
  const hours = (last.atMs - first.atMs) / 3_600_000;
  const problems: string[] = [];
  const lines = [
    `## Soak: ${MINUTES} min, load average ${Math.min(...samples.map((s) => s.load)).toFixed(1)}–${Math.max(...samples.map((s) => s.load)).toFixed(1)}`,
    '',
    `Traffic: 25 held busy connections (20 tunnelled), ~5 new TCP connections/s, ${RPS} HTTP requests/s (half on new connections), ${policyChanges} policy changes.`,
    `Fit over the ${afterWarmup.length} samples after a ${(WARMUP_MS / 60_000).toFixed(0)} min warm-up.`,
    '',
    '| process | RSS at warm-up → end (max) | RSS trend over the run | fds at warm-up → end (max) | fd trend |',
    '|---|---|---|---|---|',
  ];
  for (const name of PROCESSES) {
    const series = afterWarmup.map((s) => s.procs[name] as Sample['procs'][string]);
    const restarted = new Set(samples.map((s) => s.procs[name]?.pid)).size > 1;
    if (restarted) problems.push(`${name} restarted during the soak`);
    const rssRise = slope(afterWarmup.map((s) => [(s.atMs - first.atMs) / 3_600_000, s.procs[name]?.rssMb ?? 0])) * hours;
    const fdRise = slope(afterWarmup.map((s) => [(s.atMs - first.atMs) / 3_600_000, s.procs[name]?.fds ?? 0])) * hours;
    if (rssRise > GROWTH_LIMIT.rssMb) problems.push(`${name}'s RSS rose ${rssRise.toFixed(1)} MB along its trend`);
    if (fdRise > GROWTH_LIMIT.fds) problems.push(`${name}'s descriptors rose ${fdRise.toFixed(1)} along their trend`);
    const start = series[0];
    const end = series.at(-1);
    lines.push(
      `| ${name} | ${start?.rssMb.toFixed(1)} → ${end?.rssMb.toFixed(1)} MB (${Math.max(...series.map((p) => p.rssMb)).toFixed(1)}) | ` +
        `${rssRise >= 0 ? '+' : ''}${rssRise.toFixed(1)} MB | ${start?.fds} → ${end?.fds} (${Math.max(...series.map((p) => p.fds))}) | ${fdRise >= 0 ? '+' : ''}${fdRise.toFixed(1)} |`,
    );
  }
  for (const [name, r] of Object.entries(held)) {
    if (r.dropped.length > 0) problems.push(`${name}: ${r.dropped.length} held connections dropped (${r.dropped[0]?.reason})`);
    if (r.probes.failed > 0) problems.push(`${name}: ${r.probes.failed} of ${r.probes.ok + r.probes.failed} new connections failed`);
    lines.push(`- held from ${name}: ${r.open}/${r.held} open, ${r.echoes} echoes, longest gap ${r.maxGapMs} ms; new connections ${r.probes.ok} ok, ${r.probes.failed} failed`);
  }
  if (http.failed + http.wrong > 0) problems.push(`HTTP: ${http.failed} failed, ${http.wrong} wrong answers: ${http.failures.slice(0, 5).join('; ')}`);
  lines.push(`- HTTP: ${http.sent} sent, ${http.ok} allowed 200, ${http.denied} denied 403, ${http.wrong} wrong, ${http.failed} failed`);
  lines.push('', problems.length === 0 ? 'Verdict: no failure, no restart, no growth trend.' : `Verdict: ${problems.join('; ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return problems.length === 0 ? 0 : 1;
}

let code: number;
try {
  code = await main();
} finally {
  await cleanup();
}
process.exit(code);
