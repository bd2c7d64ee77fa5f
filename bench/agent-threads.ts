// `node bench/agent-threads.ts`: how the agent's data plane scales with worker threads
// (agent/workers.ts, docs/agent-threads.md). One network namespace of its own; a data plane with
// WORKERS ∈ {0 (main thread), 1, 2} on the real capture ports, the node capture replaced by one
// nftables redirect to the inbound plaintext port (15006), so every connection goes through
// SO_ORIGINAL_DST, the state lookup, admission and the dial, and then the relay:
//   throughput   iperf3, AGENT_BENCH_STREAMS parallel streams (default 4), bits/s received
//   connections  fortio HTTP without keep-alive, 16 connections at a time: new connections/s
//   cpu          the agent process's CPU seconds (all its threads) per GB during throughput
//   rss          the agent process's RSS once listening, before any traffic
// The clients and servers (iperf3, fortio) are native and run beside the agent on the same
// cores, as the pods would. Rounds interleave the worker counts (order rotating); min and median.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROUNDS = Math.max(1, Number(process.env.AGENT_BENCH_ROUNDS ?? 3));
const SECONDS = Number(process.env.AGENT_BENCH_SECONDS ?? 8);
const STREAMS = Number(process.env.AGENT_BENCH_STREAMS ?? 4);
const COUNTS = (process.env.AGENT_BENCH_WORKERS ?? '0,1,2').split(',').map(Number);
const FORTIO = process.env.FORTIO_BIN ?? 'fortio';
const IPERF_PORT = 9000;
const HTTP_PORT = 9002;
const SELF = fileURLToPath(import.meta.url);

if (process.argv[2] === '--agent') await runAgent(Number(process.argv[3]));
else await main();

/** Inside the namespace: the data plane with `count` workers (0: on this thread) until killed. */
async function runAgent(count: number): Promise<void> {
  const { DataPlane } = await import('../agent/data-plane.ts');
  const { DataPlaneWorkers } = await import('../agent/workers.ts');
  const { ReplicatedStore } = await import('../agent/replica.ts');
  const { DEFAULT_L7_LIMITS, DEFAULT_PATH_OPTIONS } = await import('../agent/l7/index.ts');
  const store = new ReplicatedStore();
  const ws = (name: string) => ({ key: `bench/${name}`, uid: name, namespace: 'bench', name, node: 'n1', serviceAccount: name, identity: `spiffe://cluster.local/ns/bench/sa/${name}`, meshed: true, labels: {}, namedPorts: {} });
  store.apply({ type: 'snapshot', epoch: 'e', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Workload', value: { ...ws('server'), ips: ['127.0.0.1'] } }] });
  const settings = { node: 'n1', installNamespace: 'weft-system', idleTimeoutMs: 3_600_000, l7: { limits: DEFAULT_L7_LIMITS, path: DEFAULT_PATH_OPTIONS } };
  const certificates = { certificateFor: () => undefined, secureContextFor: () => undefined, whenReady: () => Promise.reject(new Error('no certificates in this bench')) };
  // Access lines would cost the same with or without workers; they are not what is measured.
  const quiet = () => {};
  const plane =
    count > 0
      ? new DataPlaneWorkers({ count, entry: new URL('../agent/main.ts', import.meta.url), settings, store, certificates, identities: () => [], log: quiet })
      : new DataPlane({ ...settings, store, certificates, log: quiet });
  await plane.listen();
  process.stdout.write('ready\n');
}

function cpuSeconds(pid: number): number {
  // utime and stime (fields 14 and 15) of the whole process: every thread counts.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const ns = `wbench-${randomBytes(3).toString('hex')}`;
  const sh = (...a: string[]) => execFileSync(a[0] as string, a.slice(1), { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  const inNs = (...a: string[]) => sh('ip', 'netns', 'exec', ns, ...a);
  const children: ChildProcess[] = [];
  const cleanup = () => {
    for (const c of children) c.kill('SIGKILL');
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* gone */
    }
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(1));
  sh('ip', 'netns', 'add', ns);
  sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  // The agent's own connections carry the bypass mark (redirect/uncaptured.ts), as on a node.
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
    input: `table ip wbench {\n  chain out {\n    type nat hook output priority -100;\n    meta mark 0x539 return\n    tcp dport { ${IPERF_PORT}, ${HTTP_PORT} } redirect to :15006\n  }\n}\n`,
  });
  const bg = (...a: string[]) => {
    const c = spawn('ip', ['netns', 'exec', ns, ...a], { stdio: 'ignore' });
    children.push(c);
    return c;
  };
  bg('iperf3', '-s', '-p', String(IPERF_PORT), '-B', '127.0.0.1');
  bg(FORTIO, 'server', '-http-port', `127.0.0.1:${HTTP_PORT}`, '-grpc-port', 'disabled', '-redirect-port', 'disabled');
  await new Promise((r) => setTimeout(r, 1000));

  type Sample = { gbps: number; cpuPerGB: number; connsPerSec: number; rssIdleMB: number; load: number };
  const results = new Map<number, Sample[]>(COUNTS.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = COUNTS.map((_, i) => COUNTS[(i + round) % COUNTS.length] as number);
    for (const n of order) {
      const agent = spawn('ip', ['netns', 'exec', ns, process.execPath, SELF, '--agent', String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(agent);
      await new Promise<void>((resolve, reject) => {
        agent.stdout?.once('data', () => resolve());
        agent.once('exit', (code) => reject(new Error(`agent with ${n} workers exited (${code})`)));
      });
      const pid = agent.pid as number;
      await new Promise((r) => setTimeout(r, 500));
      const rssIdle = rssMB(pid);
      const load = loadavg()[0] as number;
      const cpu0 = cpuSeconds(pid);
      const iperf = JSON.parse(inNs('iperf3', '-c', '127.0.0.1', '-p', String(IPERF_PORT), '-P', String(STREAMS), '-t', String(SECONDS), '-J')) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
      const cpu = cpuSeconds(pid) - cpu0;
      const rx = iperf.end.sum_received;
      const fortio = JSON.parse(inNs(FORTIO, 'load', '-quiet', '-json', '-', '-qps', '0', '-c', '16', '-t', `${SECONDS}s`, '-keepalive=false', `http://127.0.0.1:${HTTP_PORT}/`)) as { ActualQPS: number };
      const sample = { gbps: rx.bits_per_second / 1e9, cpuPerGB: cpu / (rx.bytes / 1e9), connsPerSec: fortio.ActualQPS, rssIdleMB: rssIdle, load };
      results.get(n)?.push(sample);
      console.error(`[round ${round + 1}] workers=${n} ${sample.gbps.toFixed(2)} Gbit/s, ${sample.cpuPerGB.toFixed(2)} CPU s/GB, ${sample.connsPerSec.toFixed(0)} conn/s, RSS idle ${sample.rssIdleMB.toFixed(0)} MB, load ${load.toFixed(2)}`);
      agent.kill('SIGKILL');
      await new Promise((r) => agent.once('exit', r));
    }
  }
  const rows = COUNTS.map((n) => {
    const s = results.get(n) ?? [];
    const f = (k: keyof Sample) => ({ min: Math.min(...s.map((x) => x[k])), median: median(s.map((x) => x[k])) });
    return { workers: n, gbps: f('gbps'), cpuPerGB: f('cpuPerGB'), connsPerSec: f('connsPerSec'), rssIdleMB: f('rssIdleMB'), load: s.map((x) => x.load) };
  });
  console.log(JSON.stringify({ rounds: ROUNDS, seconds: SECONDS, streams: STREAMS, rows }, null, 2));
  const base = rows.find((r) => r.workers === 1);
  for (const r of rows) {
    if (!base || r.workers === 1) continue;
    console.log(`workers ${r.workers} ÷ 1 (medians): throughput ${(r.gbps.median / base.gbps.median).toFixed(2)}×, connections/s ${(r.connsPerSec.median / base.connsPerSec.median).toFixed(2)}×`);
  }
  // The servers in the namespace would keep the loop alive; the exit handler takes them down.
  process.exit(0);
}
