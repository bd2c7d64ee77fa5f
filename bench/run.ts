// `npm run bench`: the L4 mesh against the same traffic without the mesh, side by side in one run
// on one playground (the machines are noisy, so only same-run ratios mean anything).
//
//   latency      fortio tcp echo, fixed rate, one persistent connection, 64-byte messages (p50, p99)
//   connections  fortio HTTP without keep-alive: new connections per second
//   throughput   iperf3, one stream
//   agent        CPU seconds per GB and RSS of the agents under load; RSS with N idle tunnelled
//                connections open
//
// Everything runs between pods on two nodes of a playground named "bench"; nothing leaves the
// machine. Results print as a table and are written to bench/results/latest.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Playground, pod, type DevStatusJson } from '../tests/helpers/playground.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const QPS = Number(process.env.BENCH_QPS ?? 1000);
const IDLE_CONNS = Number(process.env.BENCH_IDLE_CONNECTIONS ?? 1000);
const pg = new Playground(process.env.BENCH_PLAYGROUND ?? 'bench');

interface Row {
  metric: string;
  direct: number;
  meshed: number;
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
  const r = await fortio(`${ns}/client`, ['-qps', String(QPS), '-c', '1', '-t', `${SECONDS}s`, '-payload-size', '64', '-p', '50,99', `tcp://${ip}:8078`]);
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

    const rows: Row[] = [];
    const lat = { direct: await latency('direct', ip('direct', 'echo')), meshed: await latency('meshed', ip('meshed', 'echo')) };
    rows.push({ metric: `latency p50 @${QPS} rps`, direct: lat.direct.p50, meshed: lat.meshed.p50, unit: 'µs', better: 'lower' });
    rows.push({ metric: `latency p99 @${QPS} rps`, direct: lat.direct.p99, meshed: lat.meshed.p99, unit: 'µs', better: 'lower' });
    const cps = { direct: await connectionsPerSecond('direct', ip('direct', 'echo')), meshed: await connectionsPerSecond('meshed', ip('meshed', 'echo')) };
    rows.push({ metric: 'new connections/s', direct: cps.direct, meshed: cps.meshed, unit: '/s', better: 'higher' });
    const tputDirect = await throughput('direct', ip('direct', 'iperf'));
    const before = await agentsSample();
    const tputMeshed = await throughput('meshed', ip('meshed', 'iperf'));
    const after = await agentsSample();
    rows.push({ metric: 'single-stream throughput', direct: tputDirect, meshed: tputMeshed, unit: 'Gbit/s', better: 'higher' });
    const gb = (tputMeshed * SECONDS) / 8;
    const agentCpu = (after.cpuSeconds - before.cpuSeconds) / gb;


    printTable(rows);
    const extra = {
      agentIdleRssMB: idle.rssMB,
      agentRssUnderLoadMB: after.rssMB,
      agentCpuSecondsPerGB: agentCpu,
      agentRssWithIdleConnectionsMB: held.rssMB,
      idleConnections: IDLE_CONNS,
      perIdleConnectionKB: ((held.rssMB - idle.rssMB) * 1024) / IDLE_CONNS,
    };
    console.log(
      [
        '',
        `agent RSS idle ${extra.agentIdleRssMB.toFixed(1)} MB, under load ${extra.agentRssUnderLoadMB.toFixed(1)} MB`,
        `agent RSS with ${IDLE_CONNS} idle tunnelled connections: ${extra.agentRssWithIdleConnectionsMB.toFixed(1)} MB (~${extra.perIdleConnectionKB.toFixed(1)} KB each)`,
        `agent CPU: ${extra.agentCpuSecondsPerGB.toFixed(2)} s per GB tunnelled (both agents)`,
      ].join('\n'),
    );
    await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
    await writeFile(join(import.meta.dirname, 'results', 'latest.json'), JSON.stringify({ at: new Date().toISOString(), seconds: SECONDS, qps: QPS, rows, ...extra }, null, 2));
  } finally {
    if (!process.env.BENCH_KEEP) await pg.down();
  }
}

function printTable(rows: Row[]): void {
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
  console.log(`\n${'metric'.padEnd(28)}${'direct'.padStart(12)}${'meshed'.padStart(12)}${'mesh/direct'.padStart(14)}  unit`);
  for (const r of rows) console.log(`${r.metric.padEnd(28)}${f(r.direct).padStart(12)}${f(r.meshed).padStart(12)}${(r.meshed / r.direct).toFixed(2).padStart(14)}  ${r.unit}`);
  for (const r of rows.filter((x) => x.unit === 'µs')) console.log(`added ${r.metric}: ${f(r.meshed - r.direct)} µs`);
}

await main();
