// End to end: distributed tracing on a real playground with a real trace backend. Jaeger, built
// from its pinned Go module (tests/jaeger), runs in an unmeshed pod; the agents export to it over
// OTLP/HTTP once `helm upgrade` sets tracing.endpoint. A meshed chain client (node-2) → A (node-1)
// → B (node-2), with an AUDIT policy that makes both hops inspected at L7, must give one trace in
// Jaeger's query API: the client's own trace continued, A's agent span under the client's span, B's
// under A's, with the mesh's attributes; a client that speaks B3 only is continued too. The
// namespace's weft.dev/trace-sampling annotation switches sampling live (0, then 1). Then the
// collector is stopped (SIGSTOP) under load: no request may fail, the dropped-span counter must
// rise, and the agents' memory is compared with its level under the same load with tracing off
// (how: above the last test).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { goTool } from './helpers/go-tool.ts';
import { Playground, REPO, eventually, pod, sh, uniqueName, type DevStatusJson, type Result } from './helpers/playground.ts';

// The first run on a machine builds Jaeger (then cached by its go.sum): 285 s at load 7-9, which
// the suite's own 600 s cannot also hold (a real-node run with a cold cache timed out so). The
// build gets a budget of its own; the suite's starts after it.
t.setTimeout(1_200_000);
const jaegerBin = await goTool(join(REPO, 'tests/jaeger'), 'github.com/jaegertracing/jaeger/cmd/jaeger', 'jaeger');

// Most of it is the playground coming up (~3 min on this machine under other work), not tracing.
t.setTimeout(600_000);

const pg = new Playground(uniqueName('trc'));
t.teardown(async () => {
  await pg.down();
});

const NS = 'trc-chain';
const OBS = 'trc-obs';
const CHAIN = join(REPO, 'tests/helpers/trace-chain.ts');
const node = process.execPath;
let status: DevStatusJson;
const podOf = (ns: string, name: string) => status.pods.find((p) => p.namespace === ns && p.name === name);

/** A host program in a network namespace (a path for `nsenter --net=`), on either runtime. */
function inNetns(netns: string, cmd: string[], timeoutMs = 15_000): Promise<Result> {
  return sh('nsenter', [`--net=${netns}`, '--', ...cmd], { timeoutMs });
}
const inPod = (ns: string, name: string, cmd: string[], timeoutMs?: number) => inNetns(podOf(ns, name)?.netnsPath ?? '', cmd, timeoutMs);
// The node's namespace, where the agent serves its ports (a hostNetwork pod on real nodes).
const nodeNetns = (n: string) => `/run/netns/${status.nodes.find((x) => x.name === n)?.netns ?? ''}`;

async function agentMetrics(n: string, openMetrics = false): Promise<string> {
  const accept = openMetrics ? ['-H', 'accept: application/openmetrics-text; version=1.0.0'] : [];
  return (await inNetns(nodeNetns(n), ['curl', '-s', ...accept, 'http://127.0.0.1:15020/metrics'])).stdout;
}

function counter(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

/**
 * The host PID of the agent on node `n` (0 if none): the supervisor's record on simulated nodes,
 * the agent process of the node's agent pod on real ones. While a DaemonSet roll surges, a node
 * has two agent pods: the one the upgrade created, or else the old one, is the one returned.
 */
async function agentPid(n: string, not?: number): Promise<number> {
  const pids = await pg.weftPids('agent', n);
  return pids.find((p) => p !== not) ?? pids[0] ?? 0;
}

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

type Received = Record<string, string>;
interface ChainAnswer {
  received: Received;
  next: { received: Received };
}

async function chain(path: string, headers: string[] = []): Promise<ChainAnswer> {
  const aIP = podOf(NS, 'chain-a')?.ip ?? '';
  const args = ['curl', '-s', '-m', '5', '-f'];
  for (const h of headers) args.push('-H', h);
  const r = await inPod(NS, 'client', [...args, `http://${aIP}:8080${path}`]);
  if (r.code !== 0) throw new Error(`chain request failed (${r.code}): ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout) as ChainAnswer;
}

async function load(seconds: number): Promise<{ ok: number; failed: number; firstError: string }> {
  const aIP = podOf(NS, 'chain-a')?.ip ?? '';
  const r = await inPod(NS, 'client', [node, CHAIN, 'load', `http://${aIP}:8080/load`, String(seconds), '4'], (seconds + 20) * 1000);
  if (r.code !== 0) throw new Error(`load failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: number; failed: number; firstError: string };
}

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; value: unknown }[];
  processID: string;
}
interface JaegerTrace {
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

async function jaegerTrace(traceId: string): Promise<JaegerTrace | undefined> {
  const r = await inPod(OBS, 'jaeger', ['curl', '-s', `http://127.0.0.1:16686/api/traces/${traceId}`]);
  try {
    return (JSON.parse(r.stdout) as { data?: JaegerTrace[] }).data?.[0];
  } catch {
    return undefined;
  }
}

const tag = (s: JaegerSpan | undefined, key: string): unknown => s?.tags.find((x) => x.key === key)?.value;
const parentOf = (s: JaegerSpan | undefined): string | undefined => s?.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
/** The parent span ID in a traceparent: `00-<trace>-<span>-<flags>`. */
const spanIn = (traceparent: string | undefined): string => traceparent?.split('-')[2] ?? '';
const traceIn = (traceparent: string | undefined): string => traceparent?.split('-')[1] ?? '';

const offRss: Record<string, number> = {};

/**
 * `helm upgrade` with `sets`, then waits until each node runs a new agent and the old one has
 * exited (a draining agent still shares the ports, metrics included).
 */
async function roll(t: Test, sets: string[]): Promise<void> {
  const before = { 'node-1': await agentPid('node-1'), 'node-2': await agentPid('node-2') };
  const args = ['upgrade', 'weft', join(REPO, 'helm/weft'), '-n', 'weft-system', '--reuse-values', '--set', 'agent.drainSeconds=3'];
  for (const v of sets) args.push('--set', v);
  const up = await pg.helm(args);
  t.equal(up.code, 0, `helm upgrade ${sets.join(' ')}: ${up.stderr.trim()}`);
  for (const n of ['node-1', 'node-2'] as const) {
    t.equal(await eventually(async () => String(![before[n], 0].includes(await agentPid(n, before[n]))), 'true', 120_000), 'true', `${n}: a new agent runs the upgraded template`);
    t.equal(await eventually(async () => String(!existsSync(`/proc/${before[n]}/status`) || /State:\s+Z/.test(readFileSync(`/proc/${before[n]}/status`, 'utf8'))), 'true', 60_000), 'true', `${n}: the old agent has exited`);
  }
  t.equal(await eventually(async () => await chain('/warmup').then(() => 'ok', (e: Error) => e.message), 'ok', 60_000), 'ok', 'the chain answers through the new agents');
}

t.before(async () => {
  status = await pg.start(2);
  t.comment(`${pg.name}: ${pg.runtime} nodes`);
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: OBS } });
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  // Jaeger all-in-one (memory store, OTLP in on 4318, query API on 16686), outside the mesh.
  // The binary is in the build cache, outside the checkout pod() mounts: a real container gets its
  // directory at the same path (the simulated kubelet runs it from the host and ignores volumes).
  const jaeger = pod(OBS, 'jaeger', ['sh', '-c', `JAEGER_LISTEN_HOST=0.0.0.0 exec ${jaegerBin}`], { node: 'node-1', port: 4318 }) as {
    spec: { containers: { volumeMounts: object[] }[]; volumes: object[] };
  };
  jaeger.spec.containers[0]?.volumeMounts.push({ name: 'jaeger', mountPath: dirname(jaegerBin), readOnly: true });
  jaeger.spec.volumes.push({ name: 'jaeger', hostPath: { path: dirname(jaegerBin), type: 'Directory' } });
  await pg.apply(jaeger);
  await pg.apply(pod(NS, 'chain-b', [node, CHAIN, 'server'], { node: 'node-2', port: 8080 }));
  await pg.apply(pod(NS, 'client', ['sleep', 'infinity'], { node: 'node-2' }));
  await pg.waitReady(NS, ['chain-b']);
  status = await pg.status();
  await pg.apply(pod(NS, 'chain-a', [node, CHAIN, 'forward', `http://${podOf(NS, 'chain-b')?.ip ?? ''}:8080`], { node: 'node-1', port: 8080 }));
  // Port 8080 speaks HTTP (the Services say so), so a rule about paths makes the agents inspect it.
  for (const name of ['chain-a', 'chain-b']) {
    await pg.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 8080, appProtocol: 'http' }] } });
  }
  await pg.apply({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name: 'audit-chain', namespace: NS }, spec: { action: 'AUDIT', rules: [{ to: [{ paths: ['/audited/*'] }] }] } });
  await pg.waitReady(NS, ['--all']);
  await pg.waitReady(OBS, ['--all'], 120);
  status = await pg.status();
  const w = await pg.kubectl(['-n', NS, 'wait', '--for=condition=Programmed', 'accesspolicy/audit-chain', '--timeout=60s'], undefined, 70_000);
  if (w.code !== 0) throw new Error(`policy not programmed: ${w.stderr}`);
});

t.test('tracing off: the chain works, the agents add no trace header', async (t) => {
  await roll(t, []);
  const answer = await chain('/plain');
  t.same(answer.received, {}, 'A got no trace header: with tracing off the agent adds none');
  t.same(answer.next.received, {}, 'nor did B');
  const r = await load(10);
  t.equal(r.failed, 0, `no failed request (${r.firstError})`);
  t.ok(r.ok > 100, `${r.ok} requests`);
  await sleep(3000);
  for (const n of ['node-1', 'node-2']) offRss[n] = rssMiB(await agentPid(n));
  // Reported only: these agents are not the ones traced later (see the last test).
  t.comment(`FIGURES: tracing off, after ${r.ok} chained requests in 10 s: agent RSS node-1 ${offRss['node-1']?.toFixed(1)} MiB, node-2 ${offRss['node-2']?.toFixed(1)} MiB`);
});

t.test('helm upgrade turns tracing on: one trace across both nodes, the app\'s own trace continued', async (t) => {
  const jaegerIP = podOf(OBS, 'jaeger')?.ip ?? '';
  await roll(t, [`tracing.endpoint=http://${jaegerIP}:4318`, 'tracing.samplingRatio=1', 'tracing.exportTimeoutMs=2000']);
  for (const n of ['node-1', 'node-2'] as const) {
    const environ = readFileSync(`/proc/${await agentPid(n)}/environ`, 'utf8').split('\0');
    t.ok(environ.includes(`WEFT_TRACING_ENDPOINT=http://${jaegerIP}:4318`), `${n}: the agent exports to the collector`);
  }

  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
  const APP_SPAN = '00f067aa0ba902b7';
  const answer = await chain('/audited/chain', [`traceparent: 00-${TRACE}-${APP_SPAN}-01`, 'tracestate: app=1', 'baggage: tenant=7']);
  const atA = answer.received.traceparent;
  const atB = answer.next.received.traceparent;
  t.equal(traceIn(atA), TRACE, "A's request carries the client's trace");
  t.not(spanIn(atA), APP_SPAN, "A's parent is its agent's span, not the client's");
  t.equal(traceIn(atB), TRACE, 'so does B, one hop later');
  t.not(spanIn(atB), spanIn(atA), "B's parent is B's agent span");
  t.equal(answer.received.tracestate, 'app=1', 'tracestate carried');
  t.equal(answer.next.received.baggage, 'tenant=7', 'baggage carried untouched');

  let trace: JaegerTrace | undefined;
  await eventually(async () => String(((trace = await jaegerTrace(TRACE))?.spans.length ?? 0) >= 2), 'true', 30_000);
  const spans = trace?.spans ?? [];
  t.equal(spans.length, 2, "Jaeger holds the two agents' spans of the trace");
  const spanA = spans.find((s) => s.spanID === spanIn(atA));
  const spanB = spans.find((s) => s.spanID === spanIn(atB));
  t.ok(spanA && spanB, "the spans are the parents the apps saw");
  t.equal(parentOf(spanA), APP_SPAN, "A's agent span is a child of the client app's span");
  t.equal(parentOf(spanB), spanA?.spanID, "B's agent span is a child of A's (A continued the trace)");
  t.equal(trace?.processes[spanA?.processID ?? '']?.serviceName, 'weft-agent');
  const principal = (name: string) => `spiffe://cluster.local/ns/${NS}/sa/${name}`;
  t.match(Object.fromEntries(spanA?.tags.map((x) => [x.key, x.value]) ?? []), {
    'span.kind': 'server',
    'http.request.method': 'GET',
    'url.path': '/audited/chain',
    'http.response.status_code': 200,
    'server.port': 8080,
    'weft.node': 'node-1',
    'weft.source.workload': 'client',
    'weft.source.namespace': NS,
    'weft.source.principal': principal('default'),
    'weft.destination.workload': 'chain-a',
    'weft.destination.namespace': NS,
    'weft.destination.principal': principal('default'),
    'weft.policy.decision': 'allow',
  });
  t.match(String(tag(spanA, 'weft.policy.audits')), `${NS}/audit-chain:`, 'the AUDIT rule that matched');
  t.equal(tag(spanB, 'weft.node'), 'node-2');
  t.equal(tag(spanB, 'weft.source.workload'), 'chain-a');
  t.equal(tag(spanB, 'weft.destination.workload'), 'chain-b');

  // The same trace in the access log, on the request-duration histogram, and the audit counted by source.
  t.match(await pg.agentLog('node-1'), new RegExp(`"kind":"request"[^\\n]*"path":"/audited/chain"[^\\n]*"trace_id":"${TRACE}"`), 'the access line carries the trace ID');
  const om = await agentMetrics('node-1', true);
  t.match(om, new RegExp(`weft_request_duration_seconds_bucket\\{[^}]*destination_workload="chain-a"[^}]*\\} \\d+ # \\{trace_id="${TRACE}"\\}`), 'an exemplar links the latency bucket to the trace (OpenMetrics)');
  t.notMatch(await agentMetrics('node-1'), /trace_id=/, 'the Prometheus text format has none');
  t.match(om, new RegExp(`weft_policy_decisions_total\\{[^}]*decision="audit"[^}]*source_workload="client",source_workload_namespace="${NS}"\\} [1-9]`), 'the audit is counted by source workload');

  // An app that speaks B3 only: its trace is continued, and A gets B3 back beside W3C.
  const B3_TRACE = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
  const B3_SPAN = '1122334455667788';
  const b3 = await chain('/b3', [`x-b3-traceid: ${B3_TRACE}`, `x-b3-spanid: ${B3_SPAN}`, 'x-b3-sampled: 1']);
  t.equal(traceIn(b3.received.traceparent), B3_TRACE, "A's request carries the B3 client's trace as W3C");
  t.equal(b3.received['x-b3-traceid'], B3_TRACE, 'and as B3, the encoding the client used');
  t.equal(b3.received['x-b3-spanid'], spanIn(b3.received.traceparent), 'both name the agent span as the parent');
  let b3Trace: JaegerTrace | undefined;
  await eventually(async () => String(((b3Trace = await jaegerTrace(B3_TRACE))?.spans.length ?? 0) >= 2), 'true', 30_000);
  const b3SpanA = b3Trace?.spans.find((x) => x.spanID === spanIn(b3.received.traceparent));
  t.equal(parentOf(b3SpanA), B3_SPAN, "in Jaeger, A's agent span is a child of the B3 client's span");
});

/** Host PIDs of the Jaeger process. */
function collectorPids(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')[0] === jaegerBin) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

interface Released {
  before: { rss: number };
  after: { rss: number; heapUsed: number; external: number };
}

/**
 * Both agents' retained memory about once a second while `load` runs, from `skipMs` on (the
 * warm-up left out): RSS right after the agent's own full collection and malloc_trim, asked of its
 * localhost admin endpoint (POST /release_memory), and RSS just before it, the raw figure.
 */
async function retainedDuring(running: Promise<unknown>, skipMs: number): Promise<Record<string, Released[]>> {
  const samples: Record<string, Released[]> = { 'node-1': [], 'node-2': [] };
  let done = false;
  running.then(
    () => (done = true),
    () => (done = true),
  );
  const started = Date.now();
  while (!done) {
    await sleep(1000);
    if (done || Date.now() - started < skipMs) continue;
    for (const n of ['node-1', 'node-2'] as const) {
      const r = await inNetns(nodeNetns(n), ['curl', '-s', '-m', '5', '-X', 'POST', 'http://127.0.0.1:15000/release_memory']);
      try {
        samples[n]?.push(JSON.parse(r.stdout) as Released);
      } catch {
        // an answer cut by the end of the phase; the next sample counts
      }
    }
  }
  return samples;
}

const MiB = 1024 * 1024;
const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;

/** Both agents' spans counted so far, exported or dropped. */
async function spansCounted(): Promise<number> {
  let sum = 0;
  for (const n of ['node-1', 'node-2']) {
    const text = await agentMetrics(n);
    sum += counter(text, 'weft_trace_spans_exported_total') + counter(text, 'weft_trace_spans_dropped_total');
  }
  return sum;
}

/**
 * What the agents logged about failed requests, and the pods' restarts. Why: one real-node run of
 * five had 416 of 1,943 requests fail (502 "upstream reset") with the collector stopped, and the
 * playground was gone before anyone could look; the next failure says which hop reset.
 */
async function explainFailures(t: Test): Promise<void> {
  for (const n of ['node-1', 'node-2']) {
    const lines = (await pg.agentLog(n)).split('\n');
    const failed = lines.filter((l) => /"status":5\d\d/.test(l));
    const resets = lines.filter((l) => l.includes('"kind":"access"') && /reset|error|refused/.test(l));
    const other = lines.filter((l) => l && !l.includes('"kind":"request"') && !l.includes('"kind":"access"'));
    t.comment(`${n}: ${failed.length} requests answered 5xx, first: ${failed.slice(0, 3).join(' | ')}`);
    t.comment(`${n}: ${resets.length} connections reset or refused, first: ${resets.slice(0, 5).join(' | ')}`);
    t.comment(`${n}: the agent's last other lines:\n${other.slice(-15).join('\n')}`);
  }
  t.comment(`pods:\n${(await pg.kubectl(['get', 'pods', '-A', '-o', 'wide'])).stdout}`);
  t.comment(`chain-a's log (tail):\n${(await pg.podLog(NS, 'chain-a')).slice(-2000)}`);
  // An app that exited is restarted by the kubelet on real nodes: its last words are in the
  // previous container's log.
  for (const name of ['chain-a', 'chain-b', 'client']) {
    const st = await pg.kubectl(['-n', NS, 'get', 'pod', name, '-o', 'jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState}']);
    if (!st.stdout.trim() || st.stdout.startsWith('0 ')) continue;
    t.comment(`${name} restarted: ${st.stdout}`);
    t.comment(`${name}'s previous log (tail):\n${(await pg.kubectl(['-n', NS, 'logs', '--previous', name])).stdout.slice(-3000)}`);
  }
}

/**
 * Each agent's event-loop delay since its metrics were last scraped (prom-client resets the
 * histogram at each scrape), max/p99 in ms: whether a phase stalled the agent. Reported only; the
 * once-a-second collections of retainedDuring are in it.
 */
async function loopDelay(): Promise<string> {
  const out: string[] = [];
  for (const n of ['node-1', 'node-2']) {
    const text = await agentMetrics(n);
    const ms = (name: string) => (counter(text, `weft_agent_nodejs_eventloop_lag_${name}_seconds`) * 1000).toFixed(0);
    out.push(`${n} ${ms('max')}/${ms('p99')}`);
  }
  return out.join(', ');
}

/** Sets the chain namespace's sampling annotation and waits until A's agent samples accordingly. */
async function sampleChain(t: Test, ratio: '0' | '1'): Promise<void> {
  const r = await pg.kubectl(['annotate', '--overwrite', 'namespace', NS, `weft.dev/trace-sampling=${ratio}`]);
  t.equal(r.code, 0, `namespace annotated weft.dev/trace-sampling=${ratio}: ${r.stderr.trim()}`);
  const flag = ratio === '1' ? '01' : '00';
  const seen = await eventually(async () => (await chain('/plain').then((a) => a.received.traceparent?.slice(-2) ?? 'none', (e: Error) => e.message)), flag, 30_000);
  t.equal(seen, flag, `A's agent now samples ${ratio === '1' ? 'every' : 'no'} new trace`);
}

/**
 * RSS that loading OpenTelemetry adds to a process like the agent: code and module state that
 * every agent with tracing on carries, whatever the traffic, measured as the agent's levels are
 * (after a full collection and malloc_trim). Median of 3 fresh processes, with the
 * agent's NODE_OPTIONS and MALLOC_ARENA_MAX, else the chart's: without the chart's 1 MB
 * semi-spaces a fresh process grows its young generation while it loads the modules, and that
 * (~4 MiB) would be charged to OpenTelemetry.
 */
async function otelLoadMiB(): Promise<{ mib: number; runs: number[]; env: string[] }> {
  const environ = readFileSync(`/proc/${await agentPid('node-1')}/environ`, 'utf8').split('\0');
  const chart = readFileSync(join(REPO, 'helm/weft/templates/agent-daemonset.yaml'), 'utf8');
  const envOf = (k: string) => environ.find((e) => e.startsWith(`${k}=`))?.slice(k.length + 1) ?? new RegExp(`name: ${k}\\s+value: "?([^"\\n]*)`).exec(chart)?.[1];
  const script = `
    const { releaseMemory } = await import(${JSON.stringify(join(REPO, 'agent/native/trim.ts'))});
    const rss = () => { releaseMemory(); return releaseMemory().after.rss; };
    await import(${JSON.stringify(join(REPO, 'agent/proxy/inspected.ts'))});
    await new Promise((r) => setTimeout(r, 200));
    const before = rss();
    const { RequestTracing } = await import(${JSON.stringify(join(REPO, 'agent/tracing/tracer.ts'))});
    const tr = new RequestTracing({ endpoint: 'http://127.0.0.1:9', protocol: 'http/protobuf', samplingRatio: 0, maxQueueSize: 1024, maxExportBatchSize: 256, scheduledDelayMs: 1000, exportTimeoutMs: 2000 }, { node: 'n' });
    tr.startServerSpan({ method: 'GET', path: '/', host: 'h', protocol: 'http/1.1', grpc: false, header: () => undefined }).end({ status: 200 });
    await new Promise((r) => setTimeout(r, 200));
    console.log((rss() - before) / 1048576);
    process.exit(0);`;
  // tap hands its own loader hooks down through NODE_OPTIONS to every process it starts, the
  // playground's agents included; they are not the agent's, and they cost per module loaded.
  const nodeOptions = (envOf('NODE_OPTIONS')?.match(/"[^"]*"|\S+/g) ?? [])
    .map((o) => o.replace(/^"|"$/g, ''))
    .filter((o) => !o.includes('@tapjs'))
    .join(' ');
  const env = [`NODE_OPTIONS=${nodeOptions}`, `MALLOC_ARENA_MAX=${envOf('MALLOC_ARENA_MAX') ?? ''}`];
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await sh('env', [...env, node, '--expose-gc', '--input-type=module', '-e', script], { timeoutMs: 30_000 });
    runs.push(Number(r.stdout.trim()));
  }
  return { mib: median(runs), runs, env };
}

// The bar: with the collector stopped, agent RSS within 10 MB of its level with tracing off, at the
// same load. Comparing two agent processes proved nothing: the tracing-off agents are others (the
// upgrade that turns tracing on replaces them), and fresh agents under the same load differ by up
// to 22 MiB with no change at all. So the comparison is made within one agent process, at the same
// load, in two parts:
//   - runtime: the chain's namespace is annotated weft.dev/trace-sampling=0, so the agents trace no
//     request (checked: no span counted), for a baseline under load; then =1 (every request traced)
//     with the collector stopped. Each level is the median of samples taken once a second after
//     the load's first 4 s, each the agent's RSS right after a full collection and malloc_trim
//     (POST /release_memory on its localhost admin port, what the idle trim does): memory the
//     agent holds, spans queued and batches awaiting the collector included, not garbage V8 has
//     yet to collect. Phases only ever follow the baseline, so any order effect counts against
//     tracing.
//   - static: what loading OpenTelemetry costs a process with the agent's memory settings
//     (otelLoadMiB, measured the same way), which the annotation cannot switch off.
// Their sum must stay under 10 MiB. Raw RSS sampled under load (the earlier measure) moved by
// -16.6 to +11.1 MiB between runs with no change to the code, more than the margin: most of it
// was garbage in old space, collected or not depending on where V8 was in its cycle. Levels after a
// collection vary by under 1 MiB within a phase; the figures of runs on unchanged code and with
// a deliberate leak are in the commit that made this an assertion again. What a stopped collector
// can make the exporter hold is bounded more tightly, with the real exporter, by
// agent/tracing/export.test.ts.
t.test('collector stopped under load: no failed request, dropped spans counted, memory bounded', async (t) => {
  const LOAD_S = 15;
  const SKIP_MS = 4000;
  await sampleChain(t, '0');
  const countedBefore = await spansCounted();
  await loopDelay();
  let running = load(LOAD_S);
  const baseMem = await retainedDuring(running, SKIP_MS);
  const base = await running;
  const baseDelay = await loopDelay();
  t.equal(base.failed, 0, `baseline (no request traced): no failed request (${base.firstError})`);
  t.equal((await spansCounted()) - countedBefore, 0, 'baseline: no span recorded, exported or dropped');

  await sampleChain(t, '1');
  // The collector stops (SIGSTOP from the host: a host process under the simulated kubelet, a
  // container's process on real nodes, found by its path either way):
  // the kernel still accepts its connections, nothing answers, which is worse for an exporter
  // than a refusal. (A SIGKILL is no test here: the kubelet restarts the container at once.)
  const droppedBefore = counter(await agentMetrics('node-1'), 'weft_trace_spans_dropped_total');
  const pids = collectorPids();
  t.ok(pids.length > 0, `the collector's process found (${pids.join(', ')})`);
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    for (const pid of pids) process.kill(pid, 'SIGCONT');
  });
  await loopDelay();
  running = load(LOAD_S);
  const stoppedMem = await retainedDuring(running, SKIP_MS);
  const r = await running;
  const stoppedDelay = await loopDelay();
  t.equal(r.failed, 0, `no failed request while the collector was stopped (${r.firstError}; event-loop delay max/p99 ms ${stoppedDelay})`);
  if (r.failed > 0) await explainFailures(t);
  t.ok(r.ok > 100, `${r.ok} requests (baseline ${base.ok})`);
  // Spans of the last seconds sit in the queue until their export times out (2 s here).
  const dropped = (await eventually(async () => String(counter(await agentMetrics('node-1'), 'weft_trace_spans_dropped_total') > droppedBefore), 'true', 15_000)) === 'true';
  const text = await agentMetrics('node-1');
  const reason = (x: string) => counter(text, 'weft_trace_spans_dropped_total', `reason="${x}"`);
  t.ok(dropped, `the dropped-span counter rose: ${counter(text, 'weft_trace_spans_dropped_total') - droppedBefore} (export_failed ${reason('export_failed')}, collector_failing ${reason('collector_failing')}, queue_full ${reason('queue_full')}, export_busy ${reason('export_busy')})`);

  const otel = await otelLoadMiB();
  const loadMiB = otel.mib;
  const figures: string[] = [];
  for (const n of ['node-1', 'node-2']) {
    const off = baseMem[n] ?? [];
    const on = stoppedMem[n] ?? [];
    t.ok(off.length >= 5 && on.length >= 5, `${n}: ${off.length} and ${on.length} samples of retained memory`);
    const level = (v: Released[], f: (x: Released) => number) => median(v.map(f)) / MiB;
    const runtime = level(on, (x) => x.after.rss) - level(off, (x) => x.after.rss);
    const raw = level(on, (x) => x.before.rss) - level(off, (x) => x.before.rss);
    const heap = level(on, (x) => x.after.heapUsed + x.after.external) - level(off, (x) => x.after.heapUsed + x.after.external);
    const spread = (v: Released[]) => `${(Math.min(...v.map((x) => x.after.rss)) / MiB).toFixed(1)}-${(Math.max(...v.map((x) => x.after.rss)) / MiB).toFixed(1)}`;
    const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
    figures.push(`${n}: retained ${level(off, (x) => x.after.rss).toFixed(1)} (${spread(off)}) → ${level(on, (x) => x.after.rss).toFixed(1)} (${spread(on)}) MiB, ${signed(runtime)}; heap+external ${signed(heap)}; raw RSS ${signed(raw)}; ${off.length}/${on.length} samples`);
    const above = `${(runtime + loadMiB).toFixed(1)} MiB above tracing off (${runtime.toFixed(1)} retained at run time, same process, same load; ${loadMiB.toFixed(1)} to load OpenTelemetry)`;
    t.ok(runtime + loadMiB < 10, `${n}: agent RSS with the collector stopped ${above}: within the bar's 10 MB`);
  }
  t.comment(`FIGURES: ${LOAD_S} s at ${(base.ok / LOAD_S).toFixed(0)} req/s untraced, then ${(r.ok / LOAD_S).toFixed(0)} req/s traced with the collector stopped: median agent RSS after a full collection and trim ${figures.join('; ')}; loading OpenTelemetry ${loadMiB.toFixed(1)} MiB (${otel.runs.map((x) => x.toFixed(1)).join(', ')}; ${otel.env.join(' ')}); agents' event-loop delay max/p99 ms untraced ${baseDelay}, collector stopped ${stoppedDelay}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
});
