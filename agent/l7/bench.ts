// L7 micro-benchmark (a script, not a test): HTTP/1.1 keep-alive requests with 64-byte responses on
// loopback, direct to a backend and through serveHttp(), and through HAProxy as the reference of
// DESIGN.md when it is installed. Run: node agent/l7/bench.ts [seconds] [connections]
//
// Each party runs in its own process. With taskset, the proxy (serveHttp or HAProxy) gets CPU 1
// alone, the load generator and the backend share CPU 0, so the proxy's CPU time can be read from
// /proc and throughput expressed per proxy core (the DESIGN.md metric). Throughput uses wrk when
// installed (else a built-in client); latency is measured at a fixed 1000 requests/s by a
// built-in client that times each request from its scheduled start, so queueing counts.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveHttp } from './serve.ts';
import { closedLoopLatencies, fixedRateLatencies, haproxyConfig, percentileOf } from './bench-client.ts';

const LOOPBACK = '127.0.0.1';
const BODY = Buffer.alloc(64, 0x78);
const RATE = 1000;

// Roles: this file is also the backend and the proxy, in child processes -------------------------

async function runBackend(): Promise<void> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.keepAliveTimeout = 0;
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
}

async function runProxy(upstreamPort: number): Promise<void> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    serveHttp(socket, {
      dial: () =>
        new Promise((resolve, reject) => {
          const upstream = net.connect({ host: LOOPBACK, port: upstreamPort, noDelay: true });
          upstream.once('connect', () => resolve(upstream));
          upstream.once('error', reject);
        }),
      authorize: (req) => (req.path.startsWith('/admin') ? { allow: false, reason: 'admin' } : { allow: true }),
    });
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
}

// Process plumbing -------------------------------------------------------------------------------

const hasTaskset = existsSync('/usr/bin/taskset');
const pinned = (cpu: number, command: string, args: string[]): [string, string[]] => (hasTaskset ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args]);

async function startChild(cpu: number, role: string, ...args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const [command, argv] = pinned(cpu, process.execPath, [import.meta.filename, role, ...args]);
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  return { child, port: (JSON.parse(line.toString()) as { port: number }).port };
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, LOOPBACK);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startHaproxy(cpu: number, upstreamPort: number, dir: string): Promise<{ child: ChildProcess; port: number } | undefined> {
  const binary = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((path) => existsSync(path));
  if (!binary) return undefined;
  const port = await freePort();
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(config, haproxyConfig(`${LOOPBACK}:${port}`, [{ name: 's1', address: `${LOOPBACK}:${upstreamPort}` }]));
  const [command, argv] = pinned(cpu, binary, ['-db', '-f', config]);
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) return { child, port };
    await sleep(20);
  }
  child.kill();
  return undefined;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: LOOPBACK, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

// Load -------------------------------------------------------------------------------------------

type Throughput = { rps: number; p50Ms: number; p99Ms: number };

const hasWrk = existsSync('/usr/bin/wrk');

function wrk(port: number, seconds: number, connections: number): Throughput {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', `http://${LOOPBACK}:${port}/bench`];
  const [command, argv] = pinned(0, 'wrk', args);
  const out = execFileSync(command, argv, { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const percentile = (p: string): number => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!m) return NaN;
    const scale = m[2] === 'us' ? 1e-3 : m[2] === 's' ? 1e3 : 1;
    return Number(m[1]) * scale;
  };
  return { rps, p50Ms: percentile('50'), p99Ms: percentile('99') };
}


/** Closed loop: every connection sends its next request as soon as the previous one is answered. */
async function closedLoop(port: number, seconds: number, connections: number): Promise<Throughput> {
  const latencies = await closedLoopLatencies(port, seconds, connections);
  return { rps: latencies.length / seconds, p50Ms: percentileOf(latencies, 50), p99Ms: percentileOf(latencies, 99) };
}

/** Open loop at a fixed rate (bench-client.ts says how the requests are spread and timed). */
async function fixedRate(port: number, seconds: number, rate: number): Promise<Throughput> {
  const latencies = await fixedRateLatencies(port, seconds, rate);
  return { rps: latencies.length / seconds, p50Ms: percentileOf(latencies, 50), p99Ms: percentileOf(latencies, 99) };
}

// Main -------------------------------------------------------------------------------------------

type Row = { path: string; max: Throughput; cpu: number; perCore: number; paced: Throughput };

async function measure(path: string, port: number, pid: number | undefined, seconds: number, connections: number): Promise<Row> {
  // Warm up (JIT, connection setup) before measuring.
  await closedLoop(port, 1, connections);
  const cpuBefore = cpuSeconds(pid);
  const started = performance.now();
  const max = hasWrk ? wrk(port, seconds, connections) : await closedLoop(port, seconds, connections);
  const elapsed = (performance.now() - started) / 1000;
  const cpu = (cpuSeconds(pid) - cpuBefore) / elapsed;
  const paced = await fixedRate(port, seconds, RATE);
  return { path, max, cpu, perCore: max.rps / cpu, paced };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const dir = mkdtempSync(join(tmpdir(), 'weft-l7-bench-'));
  const children: ChildProcess[] = [];
  try {
    const backend = await startChild(0, 'backend');
    children.push(backend.child);
    const proxy = await startChild(1, 'proxy', String(backend.port));
    children.push(proxy.child);
    const haproxy = await startHaproxy(1, backend.port, dir);
    if (haproxy) children.push(haproxy.child);

    const rows: Row[] = [];
    rows.push(await measure('direct', backend.port, backend.child.pid, seconds, connections));
    if (haproxy) rows.push(await measure('haproxy (1 thread)', haproxy.port, haproxy.child.pid, seconds, connections));
    rows.push(await measure('serveHttp', proxy.port, proxy.child.pid, seconds, connections));

    const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');
    console.log(`HTTP/1.1 keep-alive, 64 B responses, ${connections} connections, ${seconds} s per run, load by ${hasWrk ? 'wrk' : 'the built-in client'}${hasTaskset ? ', proxy pinned to CPU 1' : ''}`);
    console.log('path                 req/s   p50 ms  p99 ms  proxy CPU  req/s per proxy core  | at 1000 req/s: p50 ms  p99 ms');
    for (const r of rows) {
      const cpu = r.path === 'direct' ? '-' : `${f(r.cpu * 100)}%`;
      const perCore = r.path === 'direct' ? '-' : f(r.perCore);
      console.log(
        `${r.path.padEnd(20)} ${f(r.max.rps).padStart(6)}  ${f(r.max.p50Ms, 3).padStart(6)}  ${f(r.max.p99Ms, 3).padStart(6)}  ${cpu.padStart(9)}  ${perCore.padStart(20)}  | ${' '.repeat(14)}${f(r.paced.p50Ms, 3).padStart(6)}  ${f(r.paced.p99Ms, 3).padStart(6)}`,
      );
    }
    const direct = rows[0] as Row;
    const ours = rows.at(-1) as Row;
    console.log(`serveHttp / direct: ${f(ours.max.rps / direct.max.rps, 2)}x requests/s`);
    console.log(`serveHttp added latency at ${RATE} req/s: p50 +${f(ours.paced.p50Ms - direct.paced.p50Ms, 3)} ms, p99 +${f(ours.paced.p99Ms - direct.paced.p99Ms, 3)} ms`);
    const ha = rows.find((r) => r.path.startsWith('haproxy'));
    if (ha) {
      console.log(`serveHttp / haproxy: ${f(ours.max.rps / ha.max.rps, 2)}x requests/s, ${f(ours.perCore / ha.perCore, 2)}x requests/s per proxy core (DESIGN.md target >= 0.6)`);
    }
  } finally {
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === 'backend') await runBackend();
else if (role === 'proxy') await runProxy(Number(process.argv[3]));
else await main();
