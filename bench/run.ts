// `npm run bench`: the L4 mesh against the same traffic without the mesh, side by side in one run
// on one playground (the machines are noisy, so only same-run ratios mean anything).
//
//   latency      fortio tcp echo, fixed rate, one persistent connection, 64-byte messages (p50,
//                p99), with 10 µs histogram buckets (fortio's default of 1 ms would put every
//                figure of interest inside its first bucket)
//   connections  fortio HTTP without keep-alive: new connections per second
//   throughput   iperf3, one stream
//   agent        CPU seconds per GB and RSS of the agents under load; RSS with N idle tunnelled
//                connections open, and after the load has stopped
//
// Each metric runs BENCH_ROUNDS times (default 3), direct and meshed interleaved, alternating
// which goes first; the table shows min and median of each side, the ratio of the medians, and
// the load average beside each round, because one run on a shared machine means little.
//
// Everything runs between pods on two nodes of a playground named "bench"; nothing leaves the
// machine. Results print as a table and are written to bench/results/latest.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { Playground, pod, type DevStatusJson } from '../tests/helpers/playground.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const QPS = Number(process.env.BENCH_QPS ?? 1000);
const IDLE_CONNS = Number(process.env.BENCH_IDLE_CONNECTIONS ?? 1000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
/** fortio's histogram bucket width in seconds: 10 µs. */
const RESOLUTION = '0.00001';
const pg = new Playground(process.env.BENCH_PLAYGROUND ?? 'bench');

interface Row {
  metric: string;
  /** One value per round. */
  direct: number[];
  meshed: number[];
  unit: string;
  /** 'lower' when smaller is better. */
  better: 'lower' | 'higher';
}

function servers(ns: string): object[] {
  const fortio = pod(ns, 'echo', [fortioBin(), 'server', '-http-port', '8080', '-tcp-port', '8078', '-grpc-port', 'disabled', '-redirect-port', 'disabled'], {
    node: 'node-2',
    port: 8080,
  });
  const iperf = pod(ns, 'iperf', ['iperf3', '-s', '-p', '5201'], { node: 'node-2', port: 5201 });
  const client = pod(ns, 'client', ['sleep', 'infinity'], { node: 'node-1' });
  return [fortio, iperf, client];
}

// Set from `weft dev status` (fortio sits beside kubectl in the component cache).
let fortioPath = 'fortio';
const fortioBin = () => fortioPath;

async function exec(from: string, cmd: string[], timeoutMs = (SECONDS + 30) * 1000): Promise<string> {
  const r = await pg.exec(from, cmd, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} in ${from} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

interface FortioResult {
  ActualQPS: number;
  DurationHistogram: { Percentiles: { Percentile: number; Value: number }[]; Count: number };
  ErrorsDurationHistogram?: { Count: number };
}

async function fortio(from: string, args: string[]): Promise<FortioResult> {
  const file = `/tmp/weft-bench-${process.pid}-${Math.random().toString(36).slice(2)}.json`;
  await exec(from, [fortioBin(), 'load', '-quiet', '-json', file, ...args]);
  const r = JSON.parse(await readFile(file, 'utf8')) as FortioResult;
  return r;
}

const pct = (r: FortioResult, p: number) => (r.DurationHistogram.Percentiles.find((x) => x.Percentile === p)?.Value ?? NaN) * 1e6;

async function latency(ns: string, ip: string): Promise<{ p50: number; p99: number }> {
  const r = await fortio(`${ns}/client`, ['-qps', String(QPS), '-c', '1', '-t', `${SECONDS}s`, '-r', RESOLUTION, '-payload-size', '64', '-p', '50,99', `tcp://${ip}:8078`]);
  return { p50: pct(r, 50), p99: pct(r, 99) };
}

async function connectionsPerSecond(ns: string, ip: string): Promise<number> {
  const r = await fortio(`${ns}/client`, ['-qps', '0', '-c', '4', '-t', `${Math.max(3, SECONDS / 2)}s`, '-keepalive=false', `http://${ip}:8080/echo`]);
  return r.ActualQPS;
}

async function throughput(ns: string, ip: string): Promise<number> {
  const out = JSON.parse(await exec(`${ns}/client`, ['iperf3', '-c', ip, '-p', '5201', '-t', String(SECONDS), '-J'])) as {
    end: { sum_received: { bits_per_second: number; bytes: number } };
  };
  return out.end.sum_received.bits_per_second / 1e9;
}

interface ProcSample {
  cpuSeconds: number;
  rssMB: number;
}

async function sample(pid: number): Promise<ProcSample> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  const rss = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { cpuSeconds: ticks / 100, rssMB: Number(rss) / 1024 };
}

async function agentPids(): Promise<number[]> {
  const state = JSON.parse(await readFile(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> };
  return ['weft-agent/node-1', 'weft-agent/node-2'].map((k) => state.pids[k]).filter((p): p is number => typeof p === 'number');
}

async function agentsSample(): Promise<ProcSample> {
  const s = await Promise.all((await agentPids()).map(sample));
  return { cpuSeconds: s.reduce((a, b) => a + b.cpuSeconds, 0), rssMB: Math.max(...s.map((x) => x.rssMB)) };
}

async function main(): Promise<void> {
  await pg.down();
  const up = await pg.up(2);
  if (up.code !== 0) throw new Error(`weft dev up failed: ${up.stderr}`);
  try {
    const st = await pg.status();
    fortioPath = join(st.kubectl, '..', 'fortio');
    await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'direct' } });
    await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'meshed', labels: { 'weft.dev/mesh': 'enabled' } } });
    for (const ns of ['direct', 'meshed']) for (const m of servers(ns)) await pg.apply(m);
    await pg.waitReady('direct', ['--all']);
    await pg.waitReady('meshed', ['--all']);
    const s: DevStatusJson = await pg.status();
    const ip = (ns: string, name: string) => s.pods.find((p) => p.namespace === ns && p.name === name)?.ip ?? '';
    if (!s.pods.find((p) => p.namespace === 'meshed' && p.name === 'client')?.meshed) throw new Error('the meshed client is not captured');

    const idle = await agentsSample();
    // Idle tunnelled connections: held open from the meshed client, measured at the agents
    // before any load, against their idle RSS (a heap grown under load does not shrink back).
    const settleMs = Math.min(15_000, 3000 + IDLE_CONNS * 5);
    const holdS = Math.ceil(settleMs / 1000) + 3;
    const holder = pg.exec('meshed/client', [process.execPath, join(import.meta.dirname, 'hold-connections.ts'), ip('meshed', 'echo'), '8078', String(IDLE_CONNS), String(holdS)], (holdS + 30) * 1000);
    await new Promise((r) => setTimeout(r, settleMs));
    const held = await agentsSample();
    await holder;

    const rows: Record<string, Row> = {};
    const record = (metric: string, unit: string, better: Row['better'], side: 'direct' | 'meshed', value: number) => {
      rows[metric] ??= { metric, direct: [], meshed: [], unit, better };
      rows[metric][side].push(value);
    };
    const loads: number[] = [];
    const cpuPerGB: number[] = [];
    let rssUnderLoad = 0;
    for (let round = 0; round < ROUNDS; round++) {
      loads.push(loadavg()[0] ?? NaN);
      // Alternate which side goes first, so that a drift in the machine's load favours neither.
      const sides: ('direct' | 'meshed')[] = round % 2 === 0 ? ['direct', 'meshed'] : ['meshed', 'direct'];
      for (const side of sides) {
        const l = await latency(side, ip(side, 'echo'));
        record(`latency p50 @${QPS} rps`, 'µs', 'lower', side, l.p50);
        record(`latency p99 @${QPS} rps`, 'µs', 'lower', side, l.p99);
      }
      for (const side of sides) record('new connections/s', '/s', 'higher', side, await connectionsPerSecond(side, ip(side, 'echo')));
      for (const side of sides) {
        const before = await agentsSample();
        const gbits = await throughput(side, ip(side, 'iperf'));
        const after = await agentsSample();
        record('single-stream throughput', 'Gbit/s', 'higher', side, gbits);
        if (side === 'meshed') {
          cpuPerGB.push((after.cpuSeconds - before.cpuSeconds) / ((gbits * SECONDS) / 8));
          rssUnderLoad = Math.max(rssUnderLoad, after.rssMB);
        }
      }
      console.error(`[bench] round ${round + 1}/${ROUNDS} done (load average ${loads[round]?.toFixed(2)})`);
    }
    await new Promise((r) => setTimeout(r, 5000));
    const afterLoad = await agentsSample();

    printTable(Object.values(rows), loads);
    const extra = {
      rounds: ROUNDS,
      loadAverages: loads,
      agentIdleRssMB: idle.rssMB,
      agentRssUnderLoadMB: rssUnderLoad,
      agentRssAfterLoadMB: afterLoad.rssMB,
      agentCpuSecondsPerGB: { min: Math.min(...cpuPerGB), median: median(cpuPerGB) },
      agentRssWithIdleConnectionsMB: held.rssMB,
      idleConnections: IDLE_CONNS,
      perIdleConnectionKB: ((held.rssMB - idle.rssMB) * 1024) / IDLE_CONNS,
    };
    console.log(
      [
        '',
        `agent RSS idle ${extra.agentIdleRssMB.toFixed(1)} MB, under load ${extra.agentRssUnderLoadMB.toFixed(1)} MB, 5 s after load ${extra.agentRssAfterLoadMB.toFixed(1)} MB`,
        `agent RSS with ${IDLE_CONNS} idle tunnelled connections: ${extra.agentRssWithIdleConnectionsMB.toFixed(1)} MB (~${extra.perIdleConnectionKB.toFixed(1)} KB each)`,
        `agent CPU: ${extra.agentCpuSecondsPerGB.min.toFixed(2)} (min) / ${extra.agentCpuSecondsPerGB.median.toFixed(2)} (median) s per GB tunnelled (both agents)`,
      ].join('\n'),
    );
    await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
    await writeFile(join(import.meta.dirname, 'results', 'latest.json'), JSON.stringify({ at: new Date().toISOString(), seconds: SECONDS, qps: QPS, rows: Object.values(rows), ...extra }, null, 2));
  } finally {
    if (!process.env.BENCH_KEEP) await pg.down();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

function printTable(rows: Row[], loads: number[]): void {
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
  const cell = (xs: number[]) => `${f(Math.min(...xs))} / ${f(median(xs))}`;
  console.log(`\n${ROUNDS} interleaved rounds; load average at each round: ${loads.map((l) => l.toFixed(2)).join(', ')}`);
  console.log(`${'metric'.padEnd(28)}${'direct min / median'.padStart(22)}${'meshed min / median'.padStart(22)}${'mesh/direct'.padStart(13)}  unit`);
  for (const r of rows) {
    console.log(`${r.metric.padEnd(28)}${cell(r.direct).padStart(22)}${cell(r.meshed).padStart(22)}${(median(r.meshed) / median(r.direct)).toFixed(2).padStart(13)}  ${r.unit}`);
  }
  for (const r of rows.filter((x) => x.unit === 'µs')) console.log(`added ${r.metric} (medians): ${f(median(r.meshed) - median(r.direct))} µs`);
}

await main();
