// `npm run bench`: the L4 mesh against the same traffic without the mesh and against same-run
// references, side by side in one run on one playground (the machines are noisy, so only
// same-run ratios mean anything).
//
//   latency      fortio tcp echo, fixed rate, one persistent connection, 64-byte messages (p50,
//                p99), with 10 µs histogram buckets (fortio's default of 1 ms would put every
//                figure of interest inside its first bucket)
//   connections  fortio HTTP without keep-alive: new connections per second
//   throughput   iperf3, one stream
//   proxies      CPU seconds per GB through both ends, from /proc/<pid>/stat around each
//                throughput run; RSS idle, with N idle tunnelled connections open (before any
//                load), under load, and 5 s after the load
//
// Sides, each in its own namespace of pods (a client on node-1, an echo and an iperf3 server on
// node-2), so that no side's setup touches another's traffic:
//   direct   no mesh;
//   Weft     the namespace enrolled, Weft's agents in the nodes;
//   ztunnel  with ZTUNNEL_BIN (bench/ztunnel/README.md): ztunnel in dedicated mode in each pod's
//            namespace (bench/references.ts), the namespace not enrolled; before any measurement,
//            HBONE interop both ways (Weft client → ztunnel, ztunnel → Weft server) must pass;
//   stunnel  TLS 1.3 alone, between the direct pods, for throughput and CPU per GB.
//   Node TLS the same relay in Node (bench/node-tls-relay.ts, on the pinned runtime), between the
//            direct pods: the floor, per byte and in memory, of a data path whose bytes pass
//            through Node's TLS and streams, however little it does with them.
//
// Each metric runs BENCH_ROUNDS times (default 3) with the sides interleaved, the order rotating
// each round so that a drift in the machine's load favours no side; the table shows min and
// median per side, the ratios of the medians, and the load average at each round.
//
// BENCH_WEFT_B="NAME=VALUE ..." adds a second Weft configuration, "Weft B": the agent DaemonSet's
// environment with those variables set (NAME- removes one), e.g. BENCH_WEFT_B="WEFT_V8_FLAGS=" for
// the agents without their V8 flag. Each round then measures Weft twice, once per configuration,
// the agents rolled between (one roll per round: the order alternates), so both are measured
// under the same load. The other sides are measured once per round, with the first configuration.
// A row "RSS 5 s after its throughput run" then compares the two configurations' memory.
//
// Everything runs on a playground named BENCH_PLAYGROUND (default "bench"); nothing leaves the
// machine. Results print as a table and are written to bench/results/latest.json.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { createTestMesh } from '../agent/hbone/test-fixtures.ts';
import { Playground, pod, type DevStatusJson } from '../tests/helpers/playground.ts';
import { runTracingBench } from './tracing.ts';
import { HBONE_PORT, NODE_TLS_CLIENT_PORT, NodeTlsRelay, STUNNEL_CLIENT_PORT, Stunnel, Ztunnels, runInPod, sampleAll, spiffeId, startInPod, type PodRef } from './references.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const QPS = Number(process.env.BENCH_QPS ?? 1000);
const IDLE_CONNS = Number(process.env.BENCH_IDLE_CONNECTIONS ?? 1000);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
/** fortio's histogram bucket width in seconds: 10 µs. */
const RESOLUTION = '0.00001';
const ZTUNNEL_BIN = process.env.ZTUNNEL_BIN ? resolve(process.env.ZTUNNEL_BIN) : undefined;
const pg = new Playground(process.env.BENCH_PLAYGROUND ?? 'bench');
/** kubectl set env arguments of the second Weft configuration (see above); empty: none. */
const WEFT_B = (process.env.BENCH_WEFT_B ?? '').split(/\s+/).filter((x) => x.length > 0);

type Side = 'direct' | 'weft' | 'weftB' | 'ztunnel' | 'stunnel' | 'nodetls';
type Relay = 'stunnel' | 'nodetls';
type Proxy = Exclude<Side, 'direct'>;
type WeftSide = 'weft' | 'weftB';
const NAMESPACE: Record<Exclude<Side, Relay>, string> = { direct: 'direct', weft: 'meshed', weftB: 'meshed', ztunnel: 'ztunnel' };
const LABEL: Record<Side, string> = { direct: 'direct', weft: 'Weft', weftB: 'Weft B', ztunnel: 'ztunnel', stunnel: 'stunnel', nodetls: 'Node TLS' };

interface Row {
  metric: string;
  unit: string;
  /** One value per round and side. */
  values: Partial<Record<Side, number[]>>;
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

/** iperf3, one stream; Gbit/s and the bytes the server received. */
async function throughput(ns: string, ip: string, port = 5201): Promise<{ gbits: number; bytes: number }> {
  const out = JSON.parse(await exec(`${ns}/client`, ['iperf3', '-c', ip, '-p', String(port), '-t', String(SECONDS), '-J'])) as {
    end: { sum_received: { bits_per_second: number; bytes: number } };
  };
  return { gbits: out.end.sum_received.bits_per_second / 1e9, bytes: out.end.sum_received.bytes };
}

/** The agent DaemonSet's environment, as `kubectl set env` arguments that restore it for the names B sets. */
async function restoreArguments(): Promise<string[]> {
  const r = await pg.kubectl(['-n', 'weft-system', 'get', 'daemonset', 'weft-agent', '-o', 'json']);
  if (r.code !== 0) throw new Error(`kubectl get daemonset weft-agent: ${r.stderr}`);
  const ds = JSON.parse(r.stdout) as { spec: { template: { spec: { containers: { name: string; env?: { name: string; value?: string }[] }[] } } } };
  const env = ds.spec.template.spec.containers.find((c) => c.name === 'agent')?.env ?? [];
  return WEFT_B.map((arg) => {
    const name = arg.replace(/[=-].*$/, '');
    const was = env.find((e) => e.name === name);
    return was?.value !== undefined ? `${name}=${was.value}` : `${name}-`;
  });
}

/** Rolls both agents to the environment `args` (kubectl set env) and waits until the new ones serve alone. */
async function rollAgents(args: string[]): Promise<void> {
  const old = await agentPids();
  const r = await pg.kubectl(['-n', 'weft-system', 'set', 'env', 'daemonset/weft-agent', '-c', 'agent', ...args]);
  if (r.code !== 0) throw new Error(`kubectl set env ${args.join(' ')}: ${r.stderr}`);
  const until = Date.now() + 180_000;
  for (;;) {
    const now = await agentPids();
    const rolled = now.length === old.length && now.every((p) => !old.includes(p));
    if (rolled && old.every((p) => !existsSync(`/proc/${p}`))) break;
    if (Date.now() > until) throw new Error(`the agents did not roll to ${args.join(' ')} within 180 s (pids ${old.join(',')} -> ${now.join(',')})`);
    await new Promise((res) => setTimeout(res, 500));
  }
  // Ready is not yet serving every pod (a loaded machine was seen failing the next measurement):
  // wait until the meshed client's tunnels to the echo work again, then let start-up work settle.
  const echo = (await pg.status()).pods.find((p) => p.namespace === 'meshed' && p.name === 'echo')?.ip ?? '';
  for (;;) {
    const probe = await pg.exec('meshed/client', [fortioBin(), 'load', '-quiet', '-qps', '0', '-n', '20', '-c', '1', `tcp://${echo}:8078`], 30_000);
    if (probe.code === 0) break;
    if (Date.now() > until) throw new Error(`the meshed client cannot reach its echo through the agents rolled to ${args.join(' ')}: ${probe.stderr || probe.stdout}`);
    await new Promise((res) => setTimeout(res, 1000));
  }
  await new Promise((res) => setTimeout(res, 5000));
}

async function agentPids(): Promise<number[]> {
  const state = JSON.parse(await readFile(`/run/weft-playground/${pg.name}/state.json`, 'utf8')) as { pids: Record<string, number> };
  return ['weft-agent/node-1', 'weft-agent/node-2'].map((k) => state.pids[k]).filter((p): p is number => typeof p === 'number');
}

/** Memory of one proxy side, in MB of its largest process (per-connection: its largest growth). */
interface Memory {
  idleMB: number;
  withIdleConnectionsMB: number;
  perIdleConnectionKB: number;
  /** The same from anonymous memory alone. */
  perIdleConnectionAnonKB: number;
  underLoadMB: number;
  afterLoadMB: number;
  /** The anonymous parts (RssAnon): without the pages of the executable, which Node's is 120 MB of. */
  idleAnonMB: number;
  afterLoadAnonMB: number;
}

/** Cleanups run on the way out, also on SIGINT/SIGTERM, newest first. */
const cleanups: (() => Promise<void>)[] = [];
async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop() as () => Promise<void>;
    await c().catch((e: Error) => console.error(`[bench] cleanup: ${e.message}`));
  }
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`[bench] ${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** ztunnel's test CA lives in its source tree; by default the tree the binary was built in. */
function ztunnelSource(bin: string): string {
  const has = (dir: string) => existsSync(join(dir, 'src/tls/root-cert.pem'));
  if (process.env.ZTUNNEL_SRC) {
    const src = resolve(process.env.ZTUNNEL_SRC);
    if (!has(src)) throw new Error(`ZTUNNEL_SRC=${src} has no src/tls/root-cert.pem: it must be ztunnel's source tree (bench/ztunnel/README.md)`);
    return src;
  }
  // <src>/out/rust/release/ztunnel, or <src>/target/release/ztunnel without ztunnel's cargo config.
  for (let dir = dirname(bin), up = 0; up < 4; up++, dir = dirname(dir)) if (has(dir)) return dir;
  throw new Error(`no ztunnel source tree above ${bin}: set ZTUNNEL_SRC to the tree holding src/tls/root-cert.pem (bench/ztunnel/README.md)`);
}

async function main(): Promise<void> {
  const ztunnelSrc = ZTUNNEL_BIN ? ztunnelSource(ZTUNNEL_BIN) : undefined;
  if (ZTUNNEL_BIN && !existsSync(ZTUNNEL_BIN)) throw new Error(`ZTUNNEL_BIN=${ZTUNNEL_BIN} does not exist`);
  const stunnelBin = process.env.STUNNEL_BIN ?? which('stunnel4') ?? which('stunnel');
  const skipped: string[] = [];
  if (!ZTUNNEL_BIN) skipped.push('ztunnel skipped: set ZTUNNEL_BIN to a ztunnel built by bench/ztunnel/build.sh');
  if (!stunnelBin) skipped.push('stunnel skipped: not installed (scripts/install-system-deps.sh installs it)');
  for (const s of skipped) console.error(`[bench] ${s}`);

  await pg.down();
  const up = await pg.up(2);
  if (up.code !== 0) throw new Error(`weft dev up failed: ${up.stderr}`);
  if (!process.env.BENCH_KEEP) cleanups.push(async () => void (await pg.down()));
  const st = await pg.status();
  fortioPath = join(st.kubectl, '..', 'fortio');
  const namespaces = ['direct', 'meshed', ...(ZTUNNEL_BIN ? ['ztunnel'] : [])];
  for (const ns of namespaces) {
    await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, ...(ns === 'meshed' ? { labels: { 'weft.dev/mesh': 'enabled' } } : {}) } });
    for (const m of servers(ns)) await pg.apply(m);
  }
  // The interop check's Weft HBONE server runs in this pod, which ztunnel knows as an HBONE workload.
  if (ZTUNNEL_BIN) await pg.apply(pod('ztunnel', 'peer', ['sleep', 'infinity'], { node: 'node-2' }));
  for (const ns of namespaces) await pg.waitReady(ns, ['--all']);
  const s: DevStatusJson = await pg.status();
  const podRef = (ns: string, name: string): PodRef => {
    const p = s.pods.find((x) => x.namespace === ns && x.name === name);
    if (!p) throw new Error(`pod ${ns}/${name} is missing from weft dev status`);
    return { namespace: ns, name, node: p.node, netns: p.netns, ip: p.ip };
  };
  const ip = (ns: string, name: string) => podRef(ns, name).ip;
  if (!s.pods.find((p) => p.namespace === 'meshed' && p.name === 'client')?.meshed) throw new Error('the meshed client is not captured');
  if (s.pods.some((p) => p.namespace !== 'meshed' && p.meshed)) throw new Error('a pod outside the meshed namespace is enrolled in Weft');

  const pids: Partial<Record<Proxy, number[]>> = { weft: await agentPids() };
  // Each proxy carries a few connections before its idle memory is taken: the first connections
  // page in code (TLS, HTTP/2) and compile it, a one-time cost that is not any connection's.
  const warmUp = async (side: 'weft' | 'ztunnel'): Promise<void> => {
    const ns = NAMESPACE[side];
    await pg.exec(`${ns}/client`, [process.execPath, join(import.meta.dirname, 'hold-connections.ts'), ip(ns, 'echo'), '8078', '100', '2'], 60_000);
  };
  await warmUp('weft');
  const warmedAt = performance.now();
  const restoreA = WEFT_B.length > 0 ? await restoreArguments() : [];
  {
    const mesh = await createTestMesh();
    const relay = {
      client: podRef('direct', 'client'),
      server: podRef('direct', 'iperf'),
      port: 5201,
      clientCert: await mesh.issue('spiffe://cluster.local/ns/direct/sa/client'),
      serverCert: await mesh.issue('spiffe://cluster.local/ns/direct/sa/iperf'),
    };
    if (stunnelBin) {
      const stunnel = await Stunnel.start({ ...relay, bin: stunnelBin });
      cleanups.push(() => stunnel.stop());
      pids.stunnel = stunnel.pids();
    }
    const nodeTls = await NodeTlsRelay.start(relay);
    cleanups.push(() => nodeTls.stop());
    pids.nodetls = nodeTls.pids();
  }
  let ztunnels: Ztunnels | undefined;
  if (ZTUNNEL_BIN && ztunnelSrc) {
    const z = await Ztunnels.start({
      bin: ZTUNNEL_BIN,
      client: podRef('ztunnel', 'client'),
      servers: [podRef('ztunnel', 'echo'), podRef('ztunnel', 'iperf')],
      otherWorkloads: [podRef('ztunnel', 'peer')],
    });
    cleanups.push(() => z.stop());
    ztunnels = z;
    pids.ztunnel = z.pids();
    await interop(ztunnelSrc, podRef('ztunnel', 'client'), podRef('ztunnel', 'echo'), podRef('ztunnel', 'peer'));
    console.error('[bench] HBONE interop with ztunnel: Weft client → ztunnel inbound ok, ztunnel outbound → Weft server ok');
  }
  const meshes: ('weft' | 'ztunnel')[] = ztunnels ? ['weft', 'ztunnel'] : ['weft'];

  // Idle tunnelled connections: held open from each side's client, measured at its proxies before
  // any load, against their idle RSS (a heap grown under load does not shrink back).
  const memory: Partial<Record<Proxy, Memory>> = {};
  // The agent's idle trim (agent/native/trim.ts) collects at most once per 30 s: the warm-up's
  // collection must not be what keeps the next one from tidying up after the connections' set-up.
  await new Promise((r) => setTimeout(r, Math.max(0, 32_000 - (performance.now() - warmedAt))));
  for (const side of meshes) {
    const ns = NAMESPACE[side];
    if (side === 'ztunnel') {
      await warmUp(side);
      await new Promise((r) => setTimeout(r, 3000));
    }
    const idle = await sampleAll(pids[side] ?? []);
    const settleMs = Math.min(15_000, 3000 + IDLE_CONNS * 5);
    const holdS = Math.ceil(settleMs / 1000) + 3;
    const holder = pg.exec(`${ns}/client`, [process.execPath, join(import.meta.dirname, 'hold-connections.ts'), ip(ns, 'echo'), '8078', String(IDLE_CONNS), String(holdS)], (holdS + 30) * 1000);
    await new Promise((r) => setTimeout(r, settleMs));
    const held = await sampleAll(pids[side] ?? []);
    const r = await holder;
    if (!r.stdout.includes(`${IDLE_CONNS} connections were open`)) console.error(`[bench] ${LABEL[side]}: holder reported "${r.stdout.trim()}"`);
    const growth = held.rssMB.map((mb, i) => mb - (idle.rssMB[i] ?? 0));
    const anonGrowth = held.anonMB.map((mb, i) => mb - (idle.anonMB[i] ?? 0));
    memory[side] = {
      idleMB: Math.max(...idle.rssMB),
      withIdleConnectionsMB: Math.max(...held.rssMB),
      perIdleConnectionKB: (Math.max(...growth) * 1024) / IDLE_CONNS,
      perIdleConnectionAnonKB: (Math.max(...anonGrowth) * 1024) / IDLE_CONNS,
      underLoadMB: 0,
      afterLoadMB: 0,
      idleAnonMB: Math.max(...idle.anonMB),
      afterLoadAnonMB: 0,
    };
  }

  const rows: Record<string, Row> = {};
  const record = (metric: string, unit: string, side: Side, value: number) => {
    rows[metric] ??= { metric, unit, values: {} };
    (rows[metric].values[side] ??= []).push(value);
  };
  // The relays have carried nothing yet: their idle memory, beside the mesh sides' below.
  for (const relay of ['stunnel', 'nodetls'] as const) {
    const p = pids[relay];
    if (p) record('relay RSS idle, before any stream', 'MB', relay, Math.max(...(await sampleAll(p)).rssMB));
  }
  const loads: number[] = [];
  const ordered = <T>(xs: T[], round: number): T[] => [...xs.slice(round % xs.length), ...xs.slice(0, round % xs.length)];
  const configurations: WeftSide[] = WEFT_B.length > 0 ? ['weft', 'weftB'] : ['weft'];
  let running: WeftSide = 'weft';
  for (let round = 0; round < ROUNDS; round++) {
    loads.push(loadavg()[0] ?? NaN);
    for (const [half, weftSide] of ordered(configurations, round).entries()) {
      if (weftSide !== running) {
        await rollAgents(weftSide === 'weftB' ? WEFT_B : restoreA);
        running = weftSide;
        pids[weftSide] = await agentPids();
        console.error(`[bench] agents rolled to ${LABEL[weftSide]} (pids ${pids[weftSide]?.join(', ')})`);
      }
      await measureRound(round, half === 0 ? meshes.map((m) => (m === 'weft' ? weftSide : m)) : [weftSide], half === 0);
    }
    if (ztunnels) await ztunnels.check();
    console.error(`[bench] round ${round + 1}/${ROUNDS} done (load average ${loads[round]?.toFixed(2)})`);
  }
  if (running !== 'weft') {
    await rollAgents(restoreA);
    pids.weft = await agentPids();
  }

  async function measureRound(round: number, meshSides: (WeftSide | 'ztunnel')[], withOthers: boolean): Promise<void> {
    const echoSides: Exclude<Side, Relay>[] = [...(withOthers ? (['direct'] as const) : []), ...meshSides];
    const relays = (['stunnel', 'nodetls'] as const).filter((r) => withOthers && pids[r]);
    const streamSides: Side[] = [...echoSides, ...relays];
    for (const side of ordered(echoSides, round)) {
      const l = await latency(NAMESPACE[side], ip(NAMESPACE[side], 'echo'));
      record(`latency p50 @${QPS} rps`, 'µs', side, l.p50);
      record(`latency p99 @${QPS} rps`, 'µs', side, l.p99);
    }
    for (const side of ordered(echoSides, round)) {
      record('new connections/s', '/s', side, await connectionsPerSecond(NAMESPACE[side], ip(NAMESPACE[side], 'echo')));
    }
    for (const side of ordered(streamSides, round)) {
      const proxies = side === 'direct' ? [] : (pids[side] ?? []);
      const before = await sampleAll(proxies);
      const t =
        side === 'stunnel' || side === 'nodetls'
          ? await throughput('direct', '127.0.0.1', side === 'stunnel' ? STUNNEL_CLIENT_PORT : NODE_TLS_CLIENT_PORT)
          : await throughput(NAMESPACE[side], ip(NAMESPACE[side], 'iperf'));
      const after = await sampleAll(proxies);
      record('single-stream throughput', 'Gbit/s', side, t.gbits);
      if (side === 'direct') continue;
      const cpuPerGB = (after.cpuSeconds - before.cpuSeconds) / (t.bytes / 1e9);
      // A proxy that used next to no CPU for gigabytes was not on the path: the figures would lie.
      if (cpuPerGB < 0.05) throw new Error(`${LABEL[side]}: ${(t.bytes / 1e9).toFixed(1)} GB took ${(after.cpuSeconds - before.cpuSeconds).toFixed(2)} CPU s in its proxies: the traffic bypassed them`);
      record('proxy CPU per GB, both ends', 's/GB', side, cpuPerGB);
      // The relays' memory, the largest end just after its stream (the mesh sides' is the table below).
      if (side === 'stunnel' || side === 'nodetls') record('relay RSS after its stream', 'MB', side, Math.max(...after.rssMB));
      const m = memory[side];
      if (m) m.underLoadMB = Math.max(m.underLoadMB, ...after.rssMB);
      if (WEFT_B.length > 0 && (side === 'weft' || side === 'weftB')) {
        await new Promise((res) => setTimeout(res, 5000));
        record('RSS 5 s after its throughput run', 'MB', side, Math.max(...(await sampleAll(proxies)).rssMB));
      }
    }
  }
  await new Promise((r) => setTimeout(r, 5000));
  for (const side of meshes) {
    const m = memory[side];
    const after = await sampleAll(pids[side] ?? []);
    if (m) {
      m.afterLoadMB = Math.max(...after.rssMB);
      m.afterLoadAnonMB = Math.max(...after.anonMB);
    }
  }

  printTable(Object.values(rows), loads, memory, skipped);
  await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
  await writeFile(
    join(import.meta.dirname, 'results', 'latest.json'),
    JSON.stringify(
      {
        at: new Date().toISOString(),
        seconds: SECONDS,
        qps: QPS,
        rounds: ROUNDS,
        fortioResolutionSeconds: Number(RESOLUTION),
        loadAverages: loads,
        idleConnections: IDLE_CONNS,
        weftB: WEFT_B.length > 0 ? WEFT_B : undefined,
        ztunnel: ZTUNNEL_BIN ? { bin: ZTUNNEL_BIN, mode: 'dedicated', workerThreads: 1, interop: 'ok' } : 'skipped',
        stunnel: stunnelBin ?? 'skipped',
        nodeTls: 'bench/node-tls-relay.ts',
        rows: Object.values(rows),
        memory,
      },
      null,
      2,
    ),
  );
}

/**
 * Both directions of HBONE between Weft and ztunnel, bytes checked end to end:
 *   Weft's pool in the client pod → the echo pod's ztunnel (15008) → fortio's TCP echo;
 *   a plain connection in the client pod → its ztunnel's outbound → Weft's HboneServer in the
 *   peer pod → an echo there. The server's report proves the stream reached it through ztunnel.
 */
async function interop(ztunnelSrc: string, client: PodRef, echo: PodRef, peer: PodRef): Promise<void> {
  const script = join(import.meta.dirname, 'ztunnel', 'interop.ts');
  const a = await runInPod(
    client,
    [process.execPath, script, 'client', '--ztunnel-src', ztunnelSrc, '--source', spiffeId(client), '--server-identity', spiffeId(echo), '--hbone', `${echo.ip}:${HBONE_PORT}`, '--target', `${echo.ip}:8078`],
    60_000,
  );
  if (a.code !== 0) throw new Error(`ztunnel interop FAILED, Weft HBONE client → ztunnel inbound (${echo.ip}:${HBONE_PORT}): ${(a.stderr || a.stdout).trim()}`);

  const echoPort = 9000;
  const server = await startInPod(
    'Weft HBONE server',
    peer,
    [process.execPath, script, 'server', '--ztunnel-src', ztunnelSrc, '--identity', spiffeId(peer), '--ip', peer.ip, '--hbone-port', String(HBONE_PORT), '--echo-port', String(echoPort)],
    `/tmp/weft-bench-interop-server-${process.pid}.log`,
  );
  try {
    const until = Date.now() + 20_000;
    while (!(await server.output()).includes('ready')) {
      if (server.exited() !== undefined || Date.now() > until) throw new Error(`ztunnel interop: Weft's HBONE server did not start: ${await server.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const b = await runInPod(client, [process.execPath, script, 'plain', '--target', `${peer.ip}:${echoPort}`], 60_000);
    const seen = (await server.output())
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { stream?: { peerIdentity: string; target: { ip: string; port: number } }; event?: unknown });
    if (b.code !== 0) {
      throw new Error(`ztunnel interop FAILED, ztunnel outbound → Weft HBONE server (${peer.ip}:${HBONE_PORT}): ${(b.stderr || b.stdout).trim()}; Weft server saw: ${JSON.stringify(seen)}`);
    }
    const through = seen.some((x) => x.stream?.peerIdentity === spiffeId(client) && x.stream.target.port === echoPort);
    if (!through) throw new Error(`ztunnel interop FAILED, ztunnel outbound → Weft HBONE server: the echo answered but no stream from ${spiffeId(client)} reached the Weft server (saw ${JSON.stringify(seen)})`);
  } finally {
    await server.stop();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

function printTable(rows: Row[], loads: number[], memory: Partial<Record<Proxy, Memory>>, skipped: string[]): void {
  const f = (n: number) => (Number.isNaN(n) ? '–' : n >= 100 ? n.toFixed(0) : n.toFixed(2));
  const cell = (xs: number[] | undefined) => (xs && xs.length > 0 ? `${f(Math.min(...xs))} / ${f(median(xs))}` : '–');
  const ratio = (a: number[] | undefined, b: number[] | undefined) => (a && b ? (median(a) / median(b)).toFixed(2) : '–');
  const sides: Side[] = ['direct', 'weft', ...(WEFT_B.length > 0 ? (['weftB'] as const) : []), 'ztunnel', 'stunnel', 'nodetls'];
  console.log(`\n${ROUNDS} interleaved rounds of ${SECONDS} s per measurement, order rotating each round; fortio histogram buckets ${Number(RESOLUTION) * 1e6} µs`);
  console.log(`load average (1 min) at the start of each round: ${loads.map((l) => l.toFixed(2)).join(', ')}`);
  for (const s of skipped) console.log(s);
  console.log(`cells: min / median over the rounds; ratios: of the medians\n`);
  const withB = WEFT_B.length > 0;
  console.log(withB ? `Weft B: the agents with ${WEFT_B.join(' ')}` : '');
  const head = ['metric', ...sides.map((s) => LABEL[s]), 'Weft÷ztunnel', 'Weft÷direct', ...(withB ? ['B÷Weft'] : [])];
  console.log(head.map((h, i) => (i === 0 ? h.padEnd(34) : h.padStart(i <= sides.length ? 18 : 14))).join('') + '  unit');
  for (const r of rows) {
    const cells = [
      r.metric.padEnd(34),
      ...sides.map((s) => cell(r.values[s]).padStart(18)),
      ratio(r.values.weft, r.values.ztunnel).padStart(14),
      ratio(r.values.weft, r.values.direct).padStart(14),
      ...(withB ? [ratio(r.values.weftB, r.values.weft).padStart(14)] : []),
    ];
    console.log(`${cells.join('')}  ${r.unit}`);
  }
  for (const r of rows.filter((x) => x.unit === 'µs')) {
    const d = r.values.direct;
    if (!d) continue;
    const added = (side: Side) => (r.values[side] ? median(r.values[side]) - median(d) : NaN);
    const zt = r.values.ztunnel ? `, ztunnel ${f(added('ztunnel'))} µs, Weft÷ztunnel ${(added('weft') / added('ztunnel')).toFixed(2)}` : '';
    const b = r.values.weftB ? `, Weft B ${f(added('weftB'))} µs` : '';
    console.log(`added ${r.metric} (medians over direct): Weft ${f(added('weft'))} µs${b}${zt}`);
  }
  // The Node relay is the floor of a data path in Node: what of Weft's cost is the runtime's own.
  for (const r of rows.filter((x) => x.values.nodetls && (x.values.ztunnel || x.values.weft))) {
    console.log(`${r.metric} (medians): Node TLS÷ztunnel ${ratio(r.values.nodetls, r.values.ztunnel)}, Weft÷Node TLS ${ratio(r.values.weft, r.values.nodetls)}`);
  }
  const proxies = (['weft', 'ztunnel'] as const).filter((p) => memory[p]);
  const mem: [string, keyof Memory, string][] = [
    ['RSS idle', 'idleMB', 'MB'],
    [`RSS with ${IDLE_CONNS} idle connections`, 'withIdleConnectionsMB', 'MB'],
    ['per idle connection', 'perIdleConnectionKB', 'KB'],
    ['per idle connection, anonymous', 'perIdleConnectionAnonKB', 'KB'],
    ['RSS under load', 'underLoadMB', 'MB'],
    ['RSS 5 s after load', 'afterLoadMB', 'MB'],
    ['RSS idle, anonymous only', 'idleAnonMB', 'MB'],
    ['RSS 5 s after load, anonymous only', 'afterLoadAnonMB', 'MB'],
  ];
  console.log(`\nproxy memory (largest process of each side: Weft's two node agents, ztunnel's three pod instances)`);
  console.log(`${'metric'.padEnd(34)}${proxies.map((p) => LABEL[p].padStart(12)).join('')}${proxies.length > 1 ? 'Weft÷ztunnel'.padStart(14) : ''}  unit`);
  for (const [label, key, unit] of mem) {
    const v = proxies.map((p) => memory[p]?.[key] ?? NaN);
    // Growth per idle connection can be nil or negative at small N (allocator noise): no ratio then.
    const rt = proxies.length > 1 ? ((v[1] ?? 0) > 0 ? ((v[0] ?? NaN) / (v[1] ?? NaN)).toFixed(2) : '–').padStart(14) : '';
    console.log(`${label.padEnd(34)}${v.map((x) => x.toFixed(1).padStart(12)).join('')}${rt}  ${unit}`);
  }
}

try {
  await main();
  // Local, no playground: tracing off, 1 % and 100 % on the L7 path (bench/tracing.ts).
  if (process.env.BENCH_TRACING !== '0') await runTracingBench(SECONDS, ROUNDS);
} catch (err) {
  // After a signal, main() trips over what the cleanup is taking away: not the failure to report.
  if (!interrupted) console.error(`[bench] FAILED: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
