// What tracing costs on the L7 path: HTTP/1.1 keep-alive requests through serveHttp() with the
// agent's tracing hook (as agent/proxy/inspected.ts runs it: a server span per request, its
// attributes, its context injected into the forwarded request, the span ended and exported) with
// tracing off, at 1 % and at 100 % sampling. Spans go over OTLP/HTTP (protobuf) to a local sink
// that accepts them, so export is part of the cost.
//
// Each proxy is its own process pinned to CPU 1 (taskset), backend, sink and load generator share
// CPU 0. Per round, the three modes run in a rotating order (interleaved); per mode the table shows
// min and median over the rounds of: requests/s (closed loop, 32 connections), p99 at that load,
// p99 at a fixed 1000 requests/s, and proxy CPU µs per request (the steadiest figure).
//
// Run alone: node bench/tracing.ts [seconds] [rounds]; `npm run bench` runs it after the mesh bench
// (BENCH_TRACING=0 skips it).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveHttp, type HttpRequestInfo } from '../agent/l7/index.ts';
import type { Workload } from '../api/agent-sync.ts';
import { ConnectionReporter, type OpenedInfo } from '../agent/proxy/report.ts';
import type { RequestSpan } from '../agent/tracing/tracer.ts';
import { closedLoopLatencies, fixedRateLatencies, percentileOf } from '../agent/l7/bench-client.ts';

const LOOPBACK = '127.0.0.1';
const BODY = Buffer.alloc(64, 0x78);
const RATE = 1000;
const CONNECTIONS = 32;

// `none`: the L7 path with no tracing code at all (the agent before tracing existed), the control
// for `off`, which runs the agent's code with tracing switched off.
type Mode = 'none' | 'off' | '1%' | '100%';
const MODES: Mode[] = ['none', 'off', '1%', '100%'];
const RATIO: Record<Mode, number> = { none: 0, off: 0, '1%': 0.01, '100%': 1 };

// Roles (child processes) ------------------------------------------------------------------------

async function listenJson(server: net.Server): Promise<void> {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
}

async function runBackend(): Promise<void> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.keepAliveTimeout = 0;
  await listenJson(server);
}

/** An OTLP/HTTP endpoint that accepts everything (and counts what it got, on SIGUSR2's stdout line). */
async function runSink(): Promise<void> {
  let requests = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  process.on('SIGUSR2', () => console.error(`[sink] ${requests} exports, ${bytes} bytes`));
  await listenJson(server);
}

async function runProxy(upstreamPort: number, mode: Mode, sinkPort: number): Promise<void> {
  // Off: nothing of tracing is loaded or called, as in the agent (data-plane.ts loads it only when on).
  const tracing =
    mode === 'off' || mode === 'none'
      ? undefined
      : new (await import('../agent/tracing/tracer.ts')).RequestTracing(
          { endpoint: `http://${LOOPBACK}:${sinkPort}`, protocol: 'http/protobuf', samplingRatio: RATIO[mode], maxQueueSize: 1024, maxExportBatchSize: 256, scheduledDelayMs: 1000, exportTimeoutMs: 5000 },
          { node: 'bench-node' },
        );
  const { meshAttributes, policyAttributes } = await import('../agent/tracing/attributes.ts');
  const info: OpenedInfo = { direction: 'inbound' as const, mode: 'tunnel' as const, source: BENCH_WORKLOAD, destination: BENCH_WORKLOAD, target: { ip: LOOPBACK, port: upstreamPort }, peer: `${LOOPBACK}:1` };
  const decision = { verdict: 'allow' as const, reason: 'bench', audits: [] };
  // Every request is reported as the agent reports it (metrics with exemplars, an access line,
  // written nowhere), so that what tracing adds there is measured too.
  const report = new ConnectionReporter(() => {});
  const connection = info;
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (mode === 'none') {
      serveHttp(socket, {
        dial: () => dialUpstream(upstreamPort),
        authorize: () => ({ allow: true }),
        onRequest: (r) => report.request({ connection, protocol: r.req.protocol, method: r.req.method, path: r.req.path, host: r.req.host, status: r.status, durationMs: r.durationMs }),
      });
      return;
    }
    const spans = tracing ? new WeakMap<HttpRequestInfo, RequestSpan>() : undefined;
    const start = tracing ? { attributes: meshAttributes(info), port: upstreamPort, clientAddress: LOOPBACK } : undefined;
    serveHttp(socket, {
      dial: () => dialUpstream(upstreamPort),
      authorize: (req) => {
        if (!tracing || !spans || !start) return { allow: true };
        const span = tracing.startServerSpan(req, start);
        if (span.sampled) span.setAttributes(policyAttributes(decision));
        spans.set(req, span);
        return { allow: true, headers: span.headers };
      },
      onRequest: (r) => {
        const span = spans?.get(r.req);
        span?.end({ status: r.status, grpcStatus: r.grpcStatus });
        report.request({ connection, protocol: r.req.protocol, method: r.req.method, path: r.req.path, host: r.req.host, status: r.status, durationMs: r.durationMs, ...(span ? { traceId: span.traceId, sampled: span.sampled } : {}) });
      },
    });
  });
  await listenJson(server);
}

const BENCH_WORKLOAD: Workload = {
  key: 'bench/server-5d8f7c9b6d-x2x4z',
  uid: 'u',
  namespace: 'bench',
  name: 'server-5d8f7c9b6d-x2x4z',
  node: 'bench-node',
  ips: [LOOPBACK],
  serviceAccount: 'server',
  identity: 'spiffe://cluster.local/ns/bench/sa/server',
  meshed: true,
  labels: { app: 'server' },
  namedPorts: {},
};

function dialUpstream(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const upstream = net.connect({ host: LOOPBACK, port, noDelay: true });
    upstream.once('connect', () => resolve(upstream));
    upstream.once('error', reject);
  });
}

// Plumbing ---------------------------------------------------------------------------------------

const hasTaskset = existsSync('/usr/bin/taskset');

async function startChild(cpu: number, ...args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const argv = [process.execPath, import.meta.filename, ...args];
  const child = hasTaskset ? spawn('taskset', ['-c', String(cpu), ...argv], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  return { child, port: (JSON.parse(line.toString()) as { port: number }).port };
}

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/status`)) return NaN;
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}


async function closedLoop(port: number, seconds: number): Promise<{ rps: number; p99Ms: number; count: number }> {
  const latencies = await closedLoopLatencies(port, seconds, CONNECTIONS);
  return { rps: latencies.length / seconds, p99Ms: percentileOf(latencies, 99), count: latencies.length };
}

async function fixedRate(port: number, seconds: number): Promise<number> {
  return percentileOf(await fixedRateLatencies(port, seconds, RATE), 99);
}

interface Sample {
  rps: number;
  p99Ms: number;
  pacedP99Ms: number;
  cpuUsPerRequest: number;
  rssMiB: number;
}

export interface TracingBenchResult {
  seconds: number;
  rounds: number;
  loadavg: number[][];
  samples: Record<Mode, Sample[]>;
  hookUs: Record<Mode, number[]>;
}

/**
 * The hook alone, in this process: CPU µs per request of what inspected.ts does per request for
 * tracing (span start, attributes, headers, end, export to the sink), beside the same loop with
 * tracing off. Less exposed to the machine's noise than requests/s, since nothing waits on I/O.
 */
async function hookCost(sinkPort: number, requests: number): Promise<Record<Mode, number>> {
  const { RequestTracing } = await import('../agent/tracing/tracer.ts');
  const { meshAttributes, policyAttributes } = await import('../agent/tracing/attributes.ts');
  const info: OpenedInfo = { direction: 'inbound', mode: 'tunnel', source: BENCH_WORKLOAD, destination: BENCH_WORKLOAD, target: { ip: LOOPBACK, port: 8080 }, peer: `${LOOPBACK}:1` };
  const decision = { verdict: 'allow' as const, reason: 'bench', audits: [] };
  const headers: Record<string, string> = { 'user-agent': 'bench' };
  const req = { method: 'GET', path: '/bench', host: 'bench.example', protocol: 'http/1.1' as const, grpc: false, header: (n: string) => headers[n] };
  const out = {} as Record<Mode, number>;
  for (const mode of MODES) {
    const tracing =
      mode === 'off' || mode === 'none'
        ? undefined
        : new RequestTracing({ endpoint: `http://${LOOPBACK}:${sinkPort}`, protocol: 'http/protobuf', samplingRatio: RATIO[mode], maxQueueSize: 1024, maxExportBatchSize: 256, scheduledDelayMs: 1000, exportTimeoutMs: 5000 }, { node: 'bench-node' });
    const start = tracing ? { attributes: meshAttributes(info), port: 8080, clientAddress: LOOPBACK } : undefined;
    const cpu0 = process.cpuUsage();
    // In slices, so that the exporter's timers and sockets get their turn as they would between requests.
    for (let done = 0; done < requests; done += 1000) {
      for (let i = 0; i < 1000; i++) {
        if (mode === 'none' || !tracing || !start) continue;
        const span = tracing.startServerSpan(req, start);
        if (span.sampled) span.setAttributes(policyAttributes(decision));
        span.end({ status: 200 });
      }
      await sleep(0);
    }
    await tracing?.shutdown();
    const used = process.cpuUsage(cpu0);
    out[mode] = (used.user + used.system) / requests;
  }
  return out;
}

/** Runs the comparison and prints its table; the figures are returned for bench/results. */
export async function runTracingBench(seconds = 5, rounds = 3): Promise<TracingBenchResult> {
  const children: ChildProcess[] = [];
  const samples: Record<Mode, Sample[]> = { none: [], off: [], '1%': [], '100%': [] };
  const loads: number[][] = [];
  const hookUs: Record<Mode, number[]> = { none: [], off: [], '1%': [], '100%': [] };
  try {
    const backend = await startChild(0, 'backend');
    children.push(backend.child);
    const sink = await startChild(0, 'sink');
    children.push(sink.child);
    const proxies = {} as Record<Mode, { child: ChildProcess; port: number }>;
    for (const mode of MODES) {
      proxies[mode] = await startChild(1, 'proxy', String(backend.port), mode, String(sink.port));
      children.push(proxies[mode].child);
    }
    for (let round = 0; round < rounds; round++) {
      const hook = await hookCost(sink.port, 50_000);
      for (const mode of MODES) hookUs[mode].push(hook[mode]);
      loads.push(loadavg());
      for (let i = 0; i < MODES.length; i++) {
        const mode = MODES[(i + round) % MODES.length] as Mode;
        const p = proxies[mode];
        await closedLoop(p.port, 1); // warm-up
        const cpu0 = cpuSeconds(p.child.pid);
        const max = await closedLoop(p.port, seconds);
        const cpu = cpuSeconds(p.child.pid) - cpu0;
        const pacedP99Ms = await fixedRate(p.port, seconds);
        samples[mode].push({ rps: max.rps, p99Ms: max.p99Ms, pacedP99Ms, cpuUsPerRequest: (cpu / max.count) * 1e6, rssMiB: rssMiB(p.child.pid) });
      }
    }
  } finally {
    for (const child of children) child.kill();
  }
  const median = (v: number[]): number => {
    const s = [...v].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] ?? NaN;
  };
  const cell = (v: number[], digits: number): string => `${Math.min(...v).toFixed(digits)}/${median(v).toFixed(digits)}`;
  console.log(`\ntracing on the L7 path: HTTP/1.1 keep-alive through serveHttp with the agent's tracing hook, spans to a local OTLP/HTTP sink`);
  console.log(`${CONNECTIONS} connections, ${seconds} s per run, ${rounds} interleaved rounds${hasTaskset ? ', proxy pinned to CPU 1' : ''}; min/median; load average per round: ${loads.map((l) => l.map((x) => x.toFixed(2)).join(' ')).join(' | ')}`);
  console.log(`${'tracing'.padEnd(10)}${'req/s'.padStart(16)}${'p99 ms'.padStart(16)}${`p99 ms @${RATE}/s`.padStart(18)}${'CPU µs/req'.padStart(16)}${'RSS MiB'.padStart(14)}`);
  for (const mode of MODES) {
    const s = samples[mode];
    console.log(
      `${mode.padEnd(10)}${cell(s.map((x) => x.rps), 0).padStart(16)}${cell(s.map((x) => x.p99Ms), 2).padStart(16)}${cell(s.map((x) => x.pacedP99Ms), 2).padStart(18)}${cell(s.map((x) => x.cpuUsPerRequest), 1).padStart(16)}${median(s.map((x) => x.rssMiB)).toFixed(1).padStart(14)}`,
    );
  }
  console.log(`the tracing hook alone (50 000 requests per round, in-process, export included): CPU µs per request, min/median: ${MODES.map((m) => `${m} ${cell(hookUs[m], 2)}`).join(', ')}`);
  const off = samples.off;
  const none = samples.none;
  const offCpu = median(off.map((x) => x.cpuUsPerRequest)) - median(none.map((x) => x.cpuUsPerRequest));
  console.log(`off vs none: ${(median(off.map((x) => x.rps)) / median(none.map((x) => x.rps))).toFixed(2)}x requests/s, ${offCpu >= 0 ? '+' : ''}${offCpu.toFixed(1)} CPU µs per request (medians)`);
  for (const mode of ['1%', '100%'] as const) {
    const s = samples[mode];
    const rps = median(s.map((x) => x.rps)) / median(off.map((x) => x.rps));
    const cpu = median(s.map((x) => x.cpuUsPerRequest)) - median(off.map((x) => x.cpuUsPerRequest));
    console.log(`${mode} vs off: ${rps.toFixed(2)}x requests/s, ${cpu >= 0 ? '+' : ''}${cpu.toFixed(1)} CPU µs per request (medians)`);
  }
  return { seconds, rounds, loadavg: loads, samples, hookUs };
}

if (import.meta.filename === process.argv[1]) {
  const role = process.argv[2];
  if (role === 'backend') await runBackend();
  else if (role === 'sink') await runSink();
  else if (role === 'proxy') await runProxy(Number(process.argv[3]), process.argv[4] as Mode, Number(process.argv[5]));
  else await runTracingBench(Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 3));
}
