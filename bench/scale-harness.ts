// The control plane at scale (issue 16), shared by bench/scale.ts and tests/scale.test.ts.
//
// A real controller (controller/main.ts as a process) against the playground's real API server,
// with `nodes` Node objects and `pods` Pods created through the API server, and one simulated
// agent per Node (bench/scale-agents.ts: real sync clients, real TLS, real node-bound tokens from
// the TokenRequest API, in `agentProcs` processes). The Pods are bound to their Nodes by
// spec.nodeName and never run: the controller announces a scheduled pod at once, which is all a
// control-plane bench needs, and no kubelet is there to start it. They tolerate every taint, so
// that the node lifecycle controller does not evict them from Nodes that never report.
//
// Measured, per policy change: the time from the API write to each selected agent receiving the
// new generation, and the messages and bytes every agent received for it; per pod change the same
// bytes; the controller's CPU seconds and RSS; the API server's request counts by verb; and a
// reconnect storm: the controller stopped (SIGTERM, as a rolling update does) and started again,
// until every agent holds a snapshot from the new process.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { createRoot } from '../controller/ca/root.ts';
import { Playground, REPO, type DevStatusJson } from '../tests/helpers/playground.ts';
import type { AgentEvent, ScaleAgentsConfig } from './scale-agents.ts';

export interface ScaleOptions {
  name: string;
  nodes: number;
  pods: number;
  /** Processes the simulated agents are spread over. */
  agentProcs: number;
  /** Policy changes of each kind. */
  rounds: number;
  /** Stop and restart the controller at the end, and time the reconnect storm. */
  storm: boolean;
  /**
   * Then a leader change: a second replica started beside the first, the first SIGKILLed and the
   * agents' address moved to the second (as a Service does when the dead pod's endpoint goes).
   * Agents reach the controller through a TCP forwarder in this process for the whole run.
   */
  failover?: boolean;
  /** How long the storm may take before the run fails (default 15 min). */
  stormTimeoutMs?: number;
  /** Use the playground `name` as it is (already up, set up by an earlier run with the same sizes). */
  reuse?: boolean;
  /** Leave the playground up at the end. */
  keep?: boolean;
  log: (line: string) => void;
}

export interface Distribution {
  n: number;
  /** The first arrival: API write → watch → commit → one agent; max − min is the fan-out's spread. */
  min: number;
  p50: number;
  p99: number;
  max: number;
}

export interface ChangeCost {
  /** Agents the change was for (the policy selects a meshed pod on their node). */
  selected: number;
  /** Per selected agent: messages and bytes (median). */
  selectedMessages: number;
  selectedBytes: number;
  /** Over all other agents: how many got any message at all, and the most bytes one got. */
  othersWithMessages: number;
  othersMaxBytes: number;
}

export interface ControllerUse {
  cpuSeconds: number;
  rssMiB: number;
  peakRssMiB: number;
}

export interface ScaleReport {
  nodes: number;
  pods: number;
  agents: number;
  setupSeconds: { nodes: number; pods: number; tokens: number };
  /** From the agents' start to every agent holding its first snapshot. */
  firstSyncSeconds: number;
  /** CPU seconds of the simulated agents' processes until then. */
  firstSyncAgentsCpuSeconds: number;
  /** Seconds from the agents' start until 10, 50, 90 and 99 % of them were synced. */
  firstSyncBy: Record<string, number>;
  /** Sync attempts the controller refused meanwhile (429, 503), by its metrics. */
  firstSyncRefused: number;
  /** Policy selecting a pod on every node: API write → each agent received it. */
  broad: Distribution & { rounds: number };
  /** Policy selecting pods on a few nodes. */
  narrow: Distribution & { rounds: number };
  broadCost: ChangeCost;
  narrowCost: ChangeCost;
  /** One pod created: what every agent received. */
  podCost: { agentsWithMessage: number; bytesPerAgent: number };
  snapshotBytes: number;
  controller: { afterFirstSync: ControllerUse; afterChanges: ControllerUse; startSeconds: number };
  /**
   * Over the policy changes and the pod change (from the first round to the pod on every agent):
   * CPU seconds of the controller, of the simulated agents' processes and of this process, which
   * share the machine.
   */
  changes: { wallSeconds: number; controllerCpuSeconds: number; agentsCpuSeconds: number; benchCpuSeconds: number };
  apiServer: { setup: Record<string, number>; controllerStart: Record<string, number>; storm?: Record<string, number> };
  storm?: {
    /** SIGTERM → every agent holds a snapshot from the new controller. */
    allSyncedSeconds: number;
    /** New controller ready (/readyz) → every agent synced. */
    afterReadySeconds: number;
    readySeconds: number;
    controller: ControllerUse;
    /** Agents' sync attempts the new controller refused (503/429) or that failed before it listened, as counted by its metrics. */
    refusedStreams: number;
    tokenReviews: number;
    /** CPU seconds the simulated agents' processes spent meanwhile (parsing 1,000 snapshots is not free). */
    agentsCpuSeconds: number;
    /** What the agents received until every one was synced: messages by kind and bytes in all. */
    messages: { snapshot: number; resume: number; delta: number };
    bytes: number;
    /** Buckets the resumes replaced, summed over agents (0: every agent held the new controller's state). */
    bucketsReplaced: number;
  };
  failover?: {
    /** SIGKILL of the serving replica → every agent holds a snapshot from the other one. */
    allSyncedSeconds: number;
    /** The replicas' epochs differ: agents cannot resume by revision, only by content or snapshot. */
    epochsDiffer: boolean;
    /** After their first message from the standby, agents whose policies are exactly what their node needs. */
    agentsCorrect: number;
    /** How the standby brought them over. */
    messages: { snapshot: number; resume: number; delta: number };
    bytes: number;
    /** A policy change through the new replica: API write → every agent. */
    changeAfter: Distribution;
  };
  loadavg: string;
}

const now = (): number => performance.timeOrigin + performance.now();
const NS = 'bench';

async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

async function retrying<T>(what: string, fn: () => Promise<T>, attempts = 20): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      await sleep(Math.min(2_000, 100 * i));
    }
  }
}

function distribution(values: number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  const pct = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  return { n: s.length, min: Math.round(s[0] ?? NaN), p50: Math.round(pct(0.5)), p99: Math.round(pct(0.99)), max: Math.round(s[s.length - 1] ?? NaN) };
}

const median = (v: number[]): number => distribution(v).p50;

function procUse(pid: number): Promise<ControllerUse> {
  return Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')]).then(([stat, status]) => {
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { cpuSeconds: ticks / 100, rssMiB: Math.round(kb('VmRSS') / 1024), peakRssMiB: Math.round(kb('VmHWM') / 1024) };
  });
}

/** apiserver_request_total summed by verb (and, for LIST and WATCH, by resource). */
function requestCounts(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const verb = /verb="([^"]+)"/.exec(line)?.[1] ?? '';
    const resource = /resource="([^"]*)"/.exec(line)?.[1] ?? '';
    const n = Number(line.slice(line.lastIndexOf(' ') + 1));
    out[verb] = (out[verb] ?? 0) + n;
    if (verb === 'LIST' || verb === 'WATCH' || resource === 'tokenreviews') out[`${verb} ${resource}`] = (out[`${verb} ${resource}`] ?? 0) + n;
  }
  return out;
}

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

interface Controller {
  proc: ChildProcess;
  /** The inspector's WebSocket URL when WEFT_BENCH_PROFILE is set. */
  inspector?: string;
  health: string;
  agentPort: number;
  startedAt: number;
  readyAt: number;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A TCP forwarder standing in for the controller's Service: new connections go to `target`. */
interface Forwarder {
  target: number;
  close(): Promise<void>;
}

async function startForwarder(port: number, target: number): Promise<Forwarder> {
  const sockets = new Set<Socket>();
  const f = { target };
  const server = createServer((down) => {
    const up = tcpConnect({ host: '127.0.0.1', port: f.target });
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    get target() {
      return f.target;
    },
    set target(p: number) {
      f.target = p;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function startController(status: DevStatusJson, dir: string, port: number, log: (l: string) => void, identity = `scale-${process.pid}`): Promise<Controller> {
  const startedAt = now();
  // WEFT_BENCH_CONTROLLER_NODE_OPTIONS: flags for the controller's node (e.g. `--cpu-prof --cpu-prof-dir=…`).
  const nodeFlags = (process.env.WEFT_BENCH_CONTROLLER_NODE_OPTIONS ?? '').split(' ').filter((f) => f !== '');
  // WEFT_BENCH_PROFILE=<dir>: a CPU profile of the controller over the policy changes only (the
  // first sync would drown them), taken through the inspector.
  if (process.env.WEFT_BENCH_PROFILE) nodeFlags.push('--inspect=127.0.0.1:0');
  let inspector: string | undefined;
  const proc = spawn(
    process.execPath,
    [...nodeFlags, join(REPO, 'controller/main.ts'), '--kubeconfig', status.kubeconfig, '--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key'), '--listen', `127.0.0.1:${port}`, '--health-listen', '127.0.0.1:0', '--identity', identity],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const healthPort = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stderr as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      if (process.env.WEFT_BENCH_LOG === '1') log(line);
      inspector ??= /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1];
      try {
        const entry = JSON.parse(line) as { msg?: string; healthPort?: number; level?: string };
        if (entry.msg === 'controller started') resolve(entry.healthPort ?? 0);
        else if (entry.level === 'error') log(`controller: ${line.slice(0, 300)}`);
      } catch {
        // not a log line
      }
    });
    proc.once('exit', (code) => reject(new Error(`controller exited with ${code}`)));
  });
  const health = `http://127.0.0.1:${healthPort}`;
  for (;;) {
    const ok = await fetch(`${health}/readyz`).then((r) => r.status === 200, () => false);
    if (ok) break;
    await sleep(50);
  }
  return {
    proc,
    ...(inspector ? { inspector } : {}),
    health,
    agentPort: port,
    startedAt,
    readyAt: now(),
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill(signal);
      await exited;
    },
  };
}

/** Starts the V8 CPU profiler in the process behind `url`; the returned function stops it and writes the profile to `file`. */
async function startProfile(url: string, file: string): Promise<() => Promise<void>> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const waiting = new Map<number, (r: unknown) => void>();
  ws.onmessage = (e: MessageEvent) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown };
    if (m.id !== undefined) waiting.get(m.id)?.(m.result);
  };
  const call = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve) => {
      waiting.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 1000 });
  await call('Profiler.start');
  return async () => {
    const r = (await call('Profiler.stop')) as { profile: unknown };
    await writeFile(file, JSON.stringify(r.profile));
    ws.close();
  };
}

/** The simulated agents' events, by node. */
class Fleet {
  readonly events = new Map<string, AgentEvent[]>();
  readonly procs: ChildProcess[] = [];
  #waiters = new Set<() => void>();

  constructor(nodes: string[]) {
    for (const n of nodes) this.events.set(n, []);
  }

  start(cfg: Omit<ScaleAgentsConfig, 'nodes' | 'first'>, nodes: string[], procs: number): void {
    const per = Math.ceil(nodes.length / procs);
    for (let p = 0; p < procs; p++) {
      const mine = nodes.slice(p * per, (p + 1) * per);
      if (mine.length === 0) continue;
      const child = spawn(process.execPath, ['--max-old-space-size=4096', join(REPO, 'bench/scale-agents.ts'), JSON.stringify({ ...cfg, nodes: mine, first: p * per + 1 })], { stdio: ['ignore', 'pipe', 'inherit'] });
      this.procs.push(child);
      createInterface({ input: child.stdout }).on('line', (line) => {
        const e = JSON.parse(line) as AgentEvent;
        this.events.get(e.n)?.push(e);
        for (const w of this.#waiters) w();
      });
    }
  }

  /**
   * Resolves when `done()` holds, re-checked after events but at most every 20 ms (a check scans
   * every node, and this process shares the machine with the controller it measures); rejects
   * after `timeoutMs`. Latencies come from the agents' own timestamps, not from when this returns.
   */
  async until(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0;
    while (!done()) {
      const since = performance.now() - checked;
      if (since < 20) await sleep(20 - since);
      checked = performance.now();
      if (done()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        const w = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(w);
          resolve();
        };
        this.#waiters.add(w);
      });
    }
  }

  /** Every event of every node at or after `from`. */
  since(from: number): Map<string, AgentEvent[]> {
    const out = new Map<string, AgentEvent[]>();
    for (const [n, es] of this.events) out.set(n, es.filter((e) => e.at >= from));
    return out;
  }

  /** CPU seconds of the agents' processes so far. */
  async cpuSeconds(): Promise<number> {
    const uses = await Promise.all(this.procs.map((p) => procUse(p.pid as number).catch(() => ({ cpuSeconds: 0 }))));
    return uses.reduce((a, u) => a + u.cpuSeconds, 0);
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = once(p, 'exit');
        p.kill('SIGTERM');
        await exited;
      }),
    );
  }
}

export async function runScale(o: ScaleOptions): Promise<ScaleReport> {
  const pg = new Playground(o.name);
  const dir = await mkdtemp(join(tmpdir(), 'weft-scale-'));
  const nodes = Array.from({ length: o.nodes }, (_, i) => `scl-node-${String(i).padStart(4, '0')}`);
  const fleet = new Fleet(nodes);
  let controller: Controller | undefined;
  let standby: Controller | undefined;
  let forwarder: Forwarder | undefined;
  try {
    if (!o.reuse) {
      o.log(`starting playground ${o.name} (one simulated node; the bench's Nodes are API objects only)`);
      await pg.start(1, ['--no-mesh']);
    }
    const status = await pg.status();
    const kc = new KubeConfig();
    kc.loadFromFile(status.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const metrics = async (): Promise<Record<string, number>> => {
      const r = await pg.kubectl(['get', '--raw', '/metrics'], undefined, 60_000);
      if (r.code !== 0) throw new Error(`apiserver /metrics: ${r.stderr}`);
      return requestCounts(r.stdout);
    };
    const beforeSetup = await metrics();
    const setupSeconds = { nodes: 0, pods: 0, tokens: 0 };
    if (!o.reuse) {
      for (const args of [['create', 'namespace', 'weft-system'], ['apply', '-f', join(REPO, 'helm/weft/crds')], ['-n', 'weft-system', 'create', 'serviceaccount', 'weft-agent'], ['create', 'namespace', NS], ['label', 'namespace', NS, 'weft.dev/mesh=enabled']]) {
        const r = await pg.kubectl(args);
        if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      }
      let t0 = now();
      await pool(nodes, 32, async (name) => {
        await retrying(`node ${name}`, () => core.createNode({ body: { metadata: { name, labels: { 'weft.dev/bench': 'scale' } } } }));
      });
      setupSeconds.nodes = (now() - t0) / 1000;
      o.log(`${nodes.length} Nodes in ${setupSeconds.nodes.toFixed(1)} s`);
      await retrying('the default service account of the bench namespace', () => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 100);
      t0 = now();
      await pool(
        Array.from({ length: o.pods }, (_, i) => i),
        32,
        async (i) => {
          await retrying(`pod ${i}`, () => core.createNamespacedPod({ namespace: NS, body: benchPod(i, nodes) }));
        },
      );
      setupSeconds.pods = (now() - t0) / 1000;
      o.log(`${o.pods} Pods in ${setupSeconds.pods.toFixed(1)} s`);
    }
    let t0 = now();
    await pool(nodes, 32, async (name) => {
      const tr = await retrying(`token for ${name}`, () =>
        core.createNamespacedServiceAccountToken({ name: 'weft-agent', namespace: 'weft-system', body: { spec: { audiences: [], expirationSeconds: 7200, boundObjectRef: { apiVersion: 'v1', kind: 'Node', name } } } }),
      );
      await writeFile(join(dir, name), tr.status?.token ?? '');
    });
    setupSeconds.tokens = (now() - t0) / 1000;
    o.log(`${nodes.length} node-bound tokens in ${setupSeconds.tokens.toFixed(1)} s`);

    const root = await createRoot({ trustDomain: 'cluster.local' });
    await writeFile(join(dir, 'ca.crt'), root.certificatePem);
    await writeFile(join(dir, 'ca.key'), root.keyPem, { mode: 0o600 });
    const front = 20_000 + (process.pid % 20_000);
    const port = o.failover ? front + 1 : front;
    if (o.failover) forwarder = await startForwarder(front, port);
    const beforeController = await metrics();
    controller = await startController(status, dir, port, o.log);
    const controllerStart = (controller.readyAt - controller.startedAt) / 1000;
    o.log(`controller ready in ${controllerStart.toFixed(1)} s`);

    t0 = now();
    fleet.start({ url: `https://127.0.0.1:${front}`, caFile: join(dir, 'ca.crt'), serverName: 'weft-controller.weft-system.svc', tokenDir: dir }, nodes, o.agentProcs);
    await fleet.until('every agent synced', () => nodes.every((n) => (fleet.events.get(n)?.length ?? 0) > 0), o.stormTimeoutMs ?? 900_000);
    const firstSyncSeconds = (now() - t0) / 1000;
    // When the agents got there: a tail far behind the median is admission and backoff, not work.
    const firstAt = nodes.map((n) => ((fleet.events.get(n)?.[0]?.at ?? NaN) - t0) / 1000).sort((a, b) => a - b);
    const firstSyncBy = Object.fromEntries([0.1, 0.5, 0.9, 0.99].map((q) => [`p${q * 100}`, Math.round((firstAt[Math.ceil(q * firstAt.length) - 1] ?? NaN) * 10) / 10]));
    const firstMetrics = await fetch(`${controller.health}/metrics`).then((r) => r.text());
    const metricSum = (series: string): number =>
      firstMetrics
        .split('\n')
        .filter((l) => l.startsWith(series))
        .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const firstSyncRefused = metricSum('weft_controller_sync_streams_refused_total');
    o.log(`first sync: agents synced by (s) ${JSON.stringify(firstSyncBy)}; sync streams refused ${firstSyncRefused}; token reviews ${metricSum('weft_controller_token_reviews_total')}`);
    const firstSyncAgentsCpuSeconds = await fleet.cpuSeconds();
    const snapshotBytes = median(nodes.map((n) => fleet.events.get(n)?.find((e) => e.type === 'snapshot')?.bytes ?? 0));
    const afterFirstSync = await procUse(controller.proc.pid as number);
    const controllerStartCounts = diff(await metrics(), beforeController);
    o.log(`${nodes.length} agents synced in ${firstSyncSeconds.toFixed(1)} s; snapshot ${snapshotBytes} bytes; controller ${JSON.stringify(afterFirstSync)}`);

    // Which nodes each policy is for, from where the bench put the pods.
    const narrowApp = 'a7';
    const narrowNodes = new Set<string>();
    for (let i = 0; i < o.pods; i++) if (appOf(i) === narrowApp) narrowNodes.add(nodeOf(i, nodes));
    const broadNodes = new Set(nodes.filter((_, i) => i < o.pods));

    const ref = { group: 'weft.dev', version: 'v1alpha1', namespace: NS, plural: 'accesspolicies' };
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const spec = (name: string, round: number) => ({
      ...(name === 'narrow' ? { selector: { matchLabels: { app: narrowApp } } } : {}),
      rules: [{ from: [{ namespaces: [`client-${round}`] }] }],
    });
    for (const name of ['broad', 'narrow']) {
      await custom.deleteNamespacedCustomObject({ ...ref, name }).catch(() => undefined);
    }
    const profileDir = process.env.WEFT_BENCH_PROFILE;
    const stopProfile = profileDir && controller.inspector ? await startProfile(controller.inspector, join(profileDir, `controller-rounds-${process.pid}.cpuprofile`)) : undefined;
    const roundsStart = { at: now(), agents: await fleet.cpuSeconds(), bench: process.cpuUsage() };
    const latencies = { broad: [] as number[], narrow: [] as number[] };
    const costs = { broad: [] as ChangeCost[], narrow: [] as ChangeCost[] };
    for (let round = 1; round <= o.rounds; round++) {
      for (const name of ['broad', 'narrow'] as const) {
        const selected = name === 'broad' ? broadNodes : narrowNodes;
        const key = `${NS}/${name}`;
        const started = now();
        const body = { apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace: NS }, spec: spec(name, round) };
        const obj = (round === 1 ? await custom.createNamespacedCustomObject({ ...ref, body }) : await custom.patchNamespacedCustomObject({ ...ref, name, body: { spec: spec(name, round) } }, mergePatch)) as {
          metadata: { generation: number };
        };
        const gen = obj.metadata.generation;
        const got = (n: string): AgentEvent | undefined => fleet.events.get(n)?.find((e) => e.at >= started && e.pol.some(([k, g]) => k === key && g >= gen));
        await fleet.until(`${key} generation ${gen} on ${selected.size} nodes`, () => [...selected].every((n) => got(n)), 60_000);
        const arrivals = [...selected].map((n) => (got(n) as AgentEvent).at - started);
        latencies[name].push(...arrivals);
        // What else arrives for this change: wait as long again (at least 1 s) before counting.
        await sleep(Math.max(1_000, Math.max(...arrivals)));
        costs[name].push(changeCost(fleet.since(started), selected));
        o.log(`round ${round} ${name}: ${JSON.stringify(distribution(arrivals))} ${JSON.stringify(costs[name].at(-1))} load ${(await readFile('/proc/loadavg', 'utf8')).trim()}`);
      }
    }
    // One pod: every agent learns the workload.
    const podStarted = now();
    await core.createNamespacedPod({ namespace: NS, body: { ...benchPod(o.pods, nodes), metadata: { name: `extra-${Date.now()}`, namespace: NS, labels: { app: 'extra' } } } });
    await fleet.until('the new pod on every agent', () => nodes.every((n) => fleet.events.get(n)?.some((e) => e.at >= podStarted && e.up > 0)), 60_000);
    await sleep(1_000);
    const podEvents = [...fleet.since(podStarted).values()];
    const podCost = { agentsWithMessage: podEvents.filter((es) => es.length > 0).length, bytesPerAgent: median(podEvents.map((es) => es.reduce((a, e) => a + e.bytes, 0))) };
    o.log(`one pod created: ${JSON.stringify(podCost)}`);
    const afterChanges = await procUse(controller.proc.pid as number);
    const benchCpu = process.cpuUsage(roundsStart.bench);
    const changesUse = {
      wallSeconds: (now() - roundsStart.at) / 1000,
      controllerCpuSeconds: afterChanges.cpuSeconds - afterFirstSync.cpuSeconds,
      agentsCpuSeconds: (await fleet.cpuSeconds()) - roundsStart.agents,
      benchCpuSeconds: (benchCpu.user + benchCpu.system) / 1e6,
    };
    o.log(`policy and pod changes: ${JSON.stringify(changesUse)}`);
    await stopProfile?.();

    let storm: ScaleReport['storm'];
    let stormCounts: Record<string, number> | undefined;
    if (o.storm) {
      const oldEpoch = fleet.events.get(nodes[0] as string)?.at(-1)?.epoch;
      const beforeStorm = await metrics();
      const agentsCpuBefore = await fleet.cpuSeconds();
      const killedAt = now();
      await controller.stop('SIGTERM');
      controller = await startController(status, dir, port, o.log);
      await fleet.until('every agent on the new controller', () => nodes.every((n) => fleet.events.get(n)?.some((e) => e.at >= killedAt && e.epoch !== oldEpoch)), o.stormTimeoutMs ?? 900_000);
      const allAt = now();
      const m = await fetch(`${controller.health}/metrics`).then((r) => r.text());
      const sum = (series: string): number =>
        m
          .split('\n')
          .filter((l) => l.startsWith(series))
          .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      stormCounts = diff(await metrics(), beforeStorm);
      storm = {
        allSyncedSeconds: (allAt - killedAt) / 1000,
        afterReadySeconds: (allAt - controller.readyAt) / 1000,
        readySeconds: (controller.readyAt - killedAt) / 1000,
        controller: await procUse(controller.proc.pid as number),
        refusedStreams: sum('weft_controller_sync_streams_refused_total'),
        tokenReviews: sum('weft_controller_token_reviews_total'),
        agentsCpuSeconds: (await fleet.cpuSeconds()) - agentsCpuBefore,
        ...received(fleet.since(killedAt), allAt),
      };
      o.log(`storm: ${JSON.stringify(storm)}`);
    }
    let failover: ScaleReport['failover'];
    if (o.failover && forwarder) {
      const standbyPort = front + 2;
      standby = await startController(status, dir, standbyPort, o.log, `scale-standby-${process.pid}`);
      const oldEpoch = fleet.events.get(nodes[0] as string)?.at(-1)?.epoch;
      const killedAt = now();
      forwarder.target = standbyPort;
      await controller.stop('SIGKILL');
      controller = standby;
      standby = undefined;
      const fromNew = (n: string): AgentEvent | undefined => fleet.events.get(n)?.find((e) => e.at >= killedAt && e.epoch !== oldEpoch);
      await fleet.until('every agent on the standby replica', () => nodes.every((n) => fromNew(n)), 120_000);
      const allSyncedAt = now();
      const allSyncedSeconds = (allSyncedAt - killedAt) / 1000;
      const { messages, bytes } = received(fleet.since(killedAt), allSyncedAt);
      const newEpoch = fromNew(nodes[0] as string)?.epoch;
      let agentsCorrect = 0;
      for (const n of nodes) {
        const first = fromNew(n);
        const want = [...(broadNodes.has(n) ? [`${NS}/broad`] : []), ...(narrowNodes.has(n) ? [`${NS}/narrow`] : [])].sort();
        if (first && JSON.stringify(first.held) === JSON.stringify(want)) agentsCorrect++;
      }
      const started = now();
      const obj = (await custom.patchNamespacedCustomObject({ ...ref, name: 'broad', body: { spec: spec('broad', o.rounds + 1) } }, mergePatch)) as { metadata: { generation: number } };
      const gen = obj.metadata.generation;
      const got = (n: string): AgentEvent | undefined => fleet.events.get(n)?.find((e) => e.at >= started && e.pol.some(([k, g]) => k === `${NS}/broad` && g >= gen));
      await fleet.until('a change through the standby on every agent', () => [...broadNodes].every((n) => got(n)), 60_000);
      failover = {
        allSyncedSeconds,
        epochsDiffer: newEpoch !== undefined && newEpoch !== oldEpoch,
        agentsCorrect,
        messages,
        bytes,
        changeAfter: distribution([...broadNodes].map((n) => (got(n) as AgentEvent).at - started)),
      };
      o.log(`failover: ${JSON.stringify(failover)}`);
    }
    const setupCounts = diff(beforeController, beforeSetup);
    return {
      nodes: o.nodes,
      pods: o.pods,
      agents: nodes.length,
      setupSeconds,
      firstSyncSeconds,
      firstSyncAgentsCpuSeconds,
      firstSyncBy,
      firstSyncRefused,
      broad: { ...distribution(latencies.broad), rounds: o.rounds },
      narrow: { ...distribution(latencies.narrow), rounds: o.rounds },
      broadCost: mergeCosts(costs.broad),
      narrowCost: mergeCosts(costs.narrow),
      podCost,
      snapshotBytes,
      controller: { afterFirstSync, afterChanges, startSeconds: controllerStart },
      changes: changesUse,
      apiServer: { setup: setupCounts, controllerStart: controllerStartCounts, ...(stormCounts ? { storm: stormCounts } : {}) },
      ...(storm ? { storm } : {}),
      ...(failover ? { failover } : {}),
      loadavg: (await readFile('/proc/loadavg', 'utf8')).trim(),
    };
  } finally {
    await fleet.stop();
    await controller?.stop('SIGKILL');
    await standby?.stop('SIGKILL');
    await forwarder?.close();
    if (!o.keep) await pg.down();
    await rm(dir, { recursive: true, force: true });
  }
}

function nodeOf(i: number, nodes: string[]): string {
  return nodes[i % nodes.length] as string;
}

function appOf(i: number): string {
  return `a${i % 100}`;
}

function benchPod(i: number, nodes: string[]) {
  return {
    metadata: { name: `p-${i}`, namespace: NS, labels: { app: appOf(i) } },
    spec: {
      nodeName: nodeOf(i, nodes),
      automountServiceAccountToken: false,
      tolerations: [{ operator: 'Exists' }],
      containers: [{ name: 'c', image: 'informational', command: ['sleep', 'infinity'] }],
    },
  };
}

function changeCost(events: Map<string, AgentEvent[]>, selected: Set<string>): ChangeCost {
  const sel: AgentEvent[][] = [];
  const others: AgentEvent[][] = [];
  for (const [n, es] of events) (selected.has(n) ? sel : others).push(es);
  const bytes = (es: AgentEvent[]): number => es.reduce((a, e) => a + e.bytes, 0);
  return {
    selected: sel.length,
    selectedMessages: median(sel.map((es) => es.length)),
    selectedBytes: median(sel.map(bytes)),
    othersWithMessages: others.filter((es) => es.length > 0).length,
    othersMaxBytes: Math.max(0, ...others.map(bytes)),
  };
}

function received(events: Map<string, AgentEvent[]>, until: number): { messages: { snapshot: number; resume: number; delta: number }; bytes: number; bucketsReplaced: number } {
  const out = { messages: { snapshot: 0, resume: 0, delta: 0 }, bytes: 0, bucketsReplaced: 0 };
  for (const es of events.values()) {
    for (const e of es) {
      if (e.at > until) continue;
      out.messages[e.type === 'snapshot' ? 'snapshot' : e.resume !== undefined ? 'resume' : 'delta']++;
      out.bytes += e.bytes;
      out.bucketsReplaced += e.resume ?? 0;
    }
  }
  return out;
}

function mergeCosts(costs: ChangeCost[]): ChangeCost {
  return {
    selected: costs[0]?.selected ?? 0,
    selectedMessages: median(costs.map((c) => c.selectedMessages)),
    selectedBytes: median(costs.map((c) => c.selectedBytes)),
    othersWithMessages: Math.max(0, ...costs.map((c) => c.othersWithMessages)),
    othersMaxBytes: Math.max(0, ...costs.map((c) => c.othersMaxBytes)),
  };
}
