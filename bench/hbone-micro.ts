// HBONE tunnel microbenchmark (not a test): what the tunnel adds over plain loopback TCP.
//
//   node bench/hbone-micro.ts [--round-trips 20000] [--megabytes 1024] [--paths direct,tls,hbone,agent] [--syscalls] [--idle 1000]
//
// The "remote node" (tunnel servers and destinations) runs in a worker thread so that client and
// server each have a core, as two agents would. Three paths end at the same destinations:
//   direct  loopback TCP to the destination;
//   tls     a TLS 1.3 relay with the same certificates and no HTTP/2 (a Node stand-in for stunnel,
//           to tell TLS costs from HTTP/2 costs);
//   hbone   pool -> TLS 1.3 + HTTP/2 CONNECT -> HboneServer -> TCP;
//   agent   hbone as the outbound path runs it: the application connects to a local listener whose
//           socket is spliced to the pool stream, so both ends move bytes between a socket and a
//           stream (the client thread also carries the application's loopback socket).
// Measured: new connections per second, ping-pong latency (64 B each way on one stream, p50/p99) and single-stream upload
// throughput, plus how busy each thread's event loop was during the upload and the CPU seconds
// each thread spent per GB uploaded (process.threadCpuUsage: user + system, so the kernel's share
// of small writes counts). The client thread includes the generator and the server thread the
// sink, so what a path adds is its figure minus direct's. "other" is the rest of the process: V8's
// helper threads, where most of a major GC's marking and sweeping runs. --syscalls counts each thread's
// read/write system calls during the upload with `perf stat` (tracepoints; needs perf and root).
// Memory (the process's RSS, both ends together as two agents would be): before any traffic, with
// --idle N tunnels open and idle (each an application socket spliced to a pool stream, as on the
// outbound path, and a stream spliced to an echo connection on the server; the application and
// echo sockets count too), 3 s after the load, and 13 s after it, when the idle trim has run.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Http2Stream } from 'node:http2';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { WorkloadCertificate, type IssuedCertificate } from '../agent/identity/certificate.ts';
import { HbonePool } from '../agent/hbone/pool.ts';
import { HboneServer } from '../agent/hbone/server.ts';
import { splice, spliceReadStats } from '../agent/hbone/splice.ts';
import { connectTarget } from '../agent/hbone/target.ts';
import { createTestMesh } from '../agent/hbone/test-fixtures.ts';
import { startHeapTrimmer } from '../agent/native/trim.ts';
import { tuneV8 } from '../agent/native/v8-flags.ts';

const CLIENT = 'spiffe://cluster.local/ns/bench/sa/client';
const SERVER = 'spiffe://cluster.local/ns/bench/sa/server';
const LOOPBACK = '127.0.0.1';
const MESSAGE_BYTES = 64;

type Path = 'direct' | 'tls' | 'hbone' | 'agent';
const PATHS: Path[] = ['direct', 'tls', 'hbone', 'agent'];
/** Ports of the remote node: the destinations, and per path where the client dials for each. */
type RemotePorts = { echo: number; sink: number; tlsEcho: number; tlsSink: number; hbone: number };
type Latency = { p50: number; p99: number };
type Throughput = { gbps: number; clientBusy: number; serverBusy: number; clientCpu: number; serverCpu: number; processCpu: number; syscalls?: Syscalls };
/** Per thread ('client', 'server'), per system call: how many during the upload. */
type Syscalls = Record<string, Record<string, number>>;
type ServerReport = { busy: number; cpuSeconds: number };
const SYSCALLS = ['read', 'readv', 'write', 'writev', 'epoll_wait'];

// As the agent does at start (agent/main.ts): the C heap is given back once the process idles, and
// V8 does not answer the chunk buffers with full collections (HBONE_MICRO_NO_V8_FLAGS=1 to compare).
startHeapTrimmer();
if (!process.env.HBONE_MICRO_NO_V8_FLAGS) tuneV8();
if (isMainThread) await main();
else await remote(workerData as IssuedCertificate, parentPort as MessagePort);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'round-trips': { type: 'string', default: '20000' },
      megabytes: { type: 'string', default: '1024' },
      paths: { type: 'string', default: 'direct,tls,hbone' },
      syscalls: { type: 'boolean', default: false },
      idle: { type: 'string', default: '0' },
    },
  });
  const roundTrips = Number(values['round-trips']);
  const megabytes = Number(values.megabytes);
  const paths = values.paths.split(',').filter((p): p is Path => (PATHS as string[]).includes(p));
  if (!paths.includes('direct')) paths.unshift('direct');

  const mesh = await createTestMesh();
  const client = await mesh.issue(CLIENT);
  const server = await mesh.issue(SERVER);
  // A WorkloadCertificate cannot cross to the worker; its parts can.
  const { key } = server.tlsCredentials();
  const issued: IssuedCertificate = { identity: SERVER, keyPem: key, chainPem: server.chainPem, trustBundlePem: server.trustBundlePem };
  const worker = new Worker(new URL(import.meta.url), { workerData: issued });
  const [ports] = (await once(worker, 'message')) as [RemotePorts];

  const pool = new HbonePool({ secureContextFor: () => client.secureContext, hbonePort: ports.hbone });
  const openTunnel = (destination: 'echo' | 'sink'): Promise<Http2Stream> =>
    pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: ports[destination] } });
  const outbound = { echo: await outboundListener(() => openTunnel('echo')), sink: await outboundListener(() => openTunnel('sink')) };
  const open = async (path: Path, destination: 'echo' | 'sink'): Promise<Duplex> => {
    if (path === 'hbone') return openTunnel(destination);
    if (path === 'agent') {
      const socket = net.connect({ host: LOOPBACK, port: (outbound[destination].address() as net.AddressInfo).port, noDelay: true });
      await once(socket, 'connect');
      return socket;
    }
    if (path === 'tls') {
      const port = destination === 'echo' ? ports.tlsEcho : ports.tlsSink;
      const socket = tls.connect({ host: LOOPBACK, port, secureContext: client.secureContext, checkServerIdentity: () => undefined });
      socket.setNoDelay(true);
      await once(socket, 'secureConnect');
      return socket;
    }
    const socket = net.connect({ host: LOOPBACK, port: ports[destination], noDelay: true });
    await once(socket, 'connect');
    return socket;
  };

  console.log(`HBONE micro-benchmark: Node ${process.version}, ${roundTrips} round trips of ${MESSAGE_BYTES} B, ${megabytes} MiB upload`);
  const memory: [string, number][] = [];
  const rss = async (label: string, afterMs = 3000): Promise<void> => {
    await new Promise((resolve) => setTimeout(resolve, afterMs));
    memory.push([label, process.memoryUsage.rss() / 2 ** 20]);
  };
  await rss('idle');
  const idle = Number(values.idle);
  if (idle > 0) {
    const close = await idleTunnels(idle, () => openTunnel('echo'));
    await rss(`${idle} idle tunnels`);
    await close();
    await rss('idle tunnels closed');
  }
  const latency = {} as Record<Path, Latency>;
  const throughput = {} as Record<Path, Throughput>;
  for (const path of paths) latency[path] = await pingPong(await open(path, 'echo'), roundTrips);
  const rate = {} as Record<Path, number>;
  for (const path of paths) rate[path] = await connectionRate(() => open(path, 'echo'));
  for (const path of paths) throughput[path] = await upload(await open(path, 'sink'), megabytes, worker, values.syscalls);
  await rss('3 s after load');
  // splice() started agent/native/trim.ts, which trims once the process has been idle 5-10 s.
  await rss('13 s after load', 10_000);

  const us = (ns: number): string => (ns / 1000).toFixed(1).padStart(8);
  const x = (ratio: number): string => `${ratio.toFixed(2)}x`.padStart(8);
  console.log('\nnew connections (4 at a time, one round trip each), per second');
  for (const path of paths) console.log(`  ${path.padEnd(20)} ${rate[path].toFixed(0).padStart(8)} ${x(rate[path] / rate.direct)}`);
  console.log('\nping-pong latency         p50 µs   p99 µs  added p50  added p99');
  for (const path of paths) {
    const { p50, p99 } = latency[path];
    const added = path === 'direct' ? '' : `${us(p50 - latency.direct.p50)}   ${us(p99 - latency.direct.p99)}`;
    console.log(`  ${path.padEnd(20)} ${us(p50)} ${us(p99)}   ${added}`);
  }
  console.log('\nsingle-stream upload      Gbit/s  vs direct  client loop  server loop  client s/GB  server s/GB   other s/GB');
  for (const path of paths) {
    const { gbps, clientBusy, serverBusy, clientCpu, serverCpu, processCpu } = throughput[path];
    const busy = (share: number): string => `${(share * 100).toFixed(0)} %`.padStart(11);
    const cpu = (s: number): string => s.toFixed(3).padStart(11);
    console.log(`  ${path.padEnd(20)} ${gbps.toFixed(2).padStart(8)} ${x(gbps / throughput.direct.gbps)}  ${busy(clientBusy)}  ${busy(serverBusy)}  ${cpu(clientCpu)}  ${cpu(serverCpu)}  ${cpu(processCpu - clientCpu - serverCpu)}`);
  }
  if (values.syscalls) {
    console.log('\nsystem calls per GB uploaded (thousands)');
    console.log(`  ${'path'.padEnd(8)}${'thread'.padEnd(8)}${SYSCALLS.map((c) => c.padStart(11)).join('')}`);
    const perGB = (megabytes * 1024 * 1024) / 1e9;
    for (const path of paths) {
      for (const thread of ['client', 'server']) {
        const counts = throughput[path].syscalls?.[thread] ?? {};
        console.log(`  ${path.padEnd(8)}${thread.padEnd(8)}${SYSCALLS.map((c) => ((counts[c] ?? 0) / perGB / 1000).toFixed(1).padStart(11)).join('')}`);
      }
    }
  }
  if (throughput.hbone && latency.hbone) {
    const added = (t: Throughput): number => t.processCpu - throughput.direct.processCpu;
    console.log(`\nhbone added p50 ${us(latency.hbone.p50 - latency.direct.p50).trim()} µs, added CPU ${added(throughput.hbone).toFixed(3)} s/GB (all threads)`);
    if (throughput.tls) console.log(`hbone/tls throughput ${x(throughput.hbone.gbps / throughput.tls.gbps).trim()}, tls added CPU ${added(throughput.tls).toFixed(3)} s/GB`);
  }
  if (throughput.agent) {
    const { gbps, processCpu } = throughput.agent;
    console.log(`agent ${gbps.toFixed(2)} Gbit/s, ${processCpu.toFixed(3)} s/GB all threads (added ${(processCpu - throughput.direct.processCpu).toFixed(3)})`);
  }

  console.log(`\nsplice reads (client thread): ${JSON.stringify(spliceReadStats)}`);
  console.log(`\nprocess RSS, MB: ${memory.map(([label, mb]) => `${label} ${mb.toFixed(1)}`).join(', ')}`);
  if (idle > 0) {
    const [, before] = memory[0] as [string, number];
    const [, held] = memory[1] as [string, number];
    console.log(`per idle tunnel (both ends): ${(((held - before) * 1024) / idle).toFixed(1)} KB`);
  }

  outbound.echo.close();
  outbound.sink.close();
  await pool.close({ graceMs: 1000 });
  await worker.terminate();
}

/** A stand-in for the outbound capture listener: each accepted socket is spliced to a new tunnel. */
async function outboundListener(openStream: () => Promise<Http2Stream>): Promise<net.Server> {
  const listener = net.createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
    openStream().then(
      (stream) => void splice(stream, down),
      () => down.resetAndDestroy(),
    );
  });
  listener.listen(0, LOOPBACK);
  await once(listener, 'listening');
  return listener;
}

/**
 * Opens `count` tunnels the way the outbound path does (an application's connection to a local
 * listener, spliced to a pool stream) and leaves them idle; the returned function closes them.
 */
async function idleTunnels(count: number, openStream: () => Promise<Http2Stream>): Promise<() => Promise<void>> {
  const outbound = await outboundListener(openStream);
  const { port } = outbound.address() as net.AddressInfo;
  const apps: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const app = net.connect({ host: LOOPBACK, port, noDelay: true });
    apps.push(app);
    // One round trip each: the tunnel is up end to end before it goes idle.
    await once(app, 'connect');
    app.write('x');
    await once(app, 'data');
  }
  return async () => {
    await Promise.all(apps.map((app) => new Promise<void>((resolve) => app.end(() => resolve()))));
    for (const app of apps) app.destroy();
    outbound.close();
  };
}

/**
 * Connections per second over 3 s, 4 at a time, each opened, one byte echoed, ended and awaited
 * until closed: for hbone a CONNECT on a pooled connection, the server's dial and both splices.
 */
async function connectionRate(openConnection: () => Promise<Duplex>): Promise<number> {
  const until = performance.now() + 3000;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      const connection = await openConnection();
      connection.write('x');
      await once(connection, 'data');
      const closed = once(connection, 'close');
      connection.end();
      connection.resume();
      await closed;
      done += 1;
    }
  };
  const started = performance.now();
  await Promise.all([worker(), worker(), worker(), worker()]);
  return done / ((performance.now() - started) / 1000);
}

/** One message in flight at a time; p50/p99 round-trip time in ns. */
async function pingPong(stream: Duplex, roundTrips: number): Promise<Latency> {
  const message = Buffer.alloc(MESSAGE_BYTES, 0x61);
  const samples = new Float64Array(roundTrips);
  const warmup = Math.min(2000, roundTrips);
  await new Promise<void>((resolve) => {
    let pending = MESSAGE_BYTES;
    let index = -warmup;
    let sentAt = 0n;
    const send = (): void => {
      sentAt = process.hrtime.bigint();
      stream.write(message);
    };
    stream.on('data', (chunk: Buffer) => {
      pending -= chunk.length;
      if (pending > 0) return;
      pending = MESSAGE_BYTES;
      if (index >= 0) samples[index] = Number(process.hrtime.bigint() - sentAt);
      index += 1;
      if (index < roundTrips) send();
      else resolve();
    });
    send();
  });
  stream.end();
  samples.sort();
  return { p50: samples[Math.floor(roundTrips * 0.5)] as number, p99: samples[Math.floor(roundTrips * 0.99)] as number };
}

/** Sends `megabytes` MiB from one reused buffer and waits for the sink's byte count. */
async function upload(stream: Duplex, megabytes: number, worker: Worker, countSyscalls: boolean): Promise<Throughput> {
  const chunk = Buffer.alloc(256 * 1024, 0x62);
  const total = megabytes * 1024 * 1024;
  const acknowledged = new Promise<string>((resolve) => {
    let reply = '';
    stream.on('data', (data: Buffer) => (reply += data.toString()));
    stream.on('end', () => resolve(reply));
  });
  const counter = countSyscalls ? await startSyscallCount() : undefined;
  worker.postMessage('measure');
  await once(worker, 'message');
  const clientStart = performance.eventLoopUtilization();
  const clientCpuStart = process.threadCpuUsage();
  const processCpuStart = process.cpuUsage();
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  const reply = await acknowledged;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const clientBusy = performance.eventLoopUtilization(clientStart).utilization;
  const clientCpu = cpuSeconds(process.threadCpuUsage(clientCpuStart));
  const processCpu = cpuSeconds(process.cpuUsage(processCpuStart));
  worker.postMessage('report');
  const [server] = (await once(worker, 'message')) as [ServerReport];
  const syscalls = await counter?.();
  if (Number(reply) !== total) throw new Error(`sink received ${reply} bytes, expected ${total}`);
  const gb = total / 1e9;
  return { gbps: (total * 8) / seconds / 1e9, clientBusy, serverBusy: server.busy, clientCpu: clientCpu / gb, serverCpu: server.cpuSeconds / gb, processCpu: processCpu / gb, syscalls };
}

function cpuSeconds(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

/**
 * Starts `perf stat` on this process, one count per thread and system call; the returned function
 * stops it and reads the counts of the main thread ('client') and the worker ('server').
 */
async function startSyscallCount(): Promise<() => Promise<Syscalls>> {
  const events = SYSCALLS.map((c) => `syscalls:sys_enter_${c}`).join(',');
  const perf = spawn('perf', ['stat', '-x', ',', '--per-thread', '-e', events, '-p', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  perf.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // perf attaches asynchronously; counts from before it did would be lost.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return async () => {
    perf.kill('SIGINT');
    await once(perf, 'close');
    const result: Syscalls = { client: {}, server: {} };
    for (const line of out.split('\n')) {
      // comm-tid,count,,event,...
      const [thread, count, , event] = line.split(',');
      const name = thread?.startsWith('MainThread') ? 'client' : thread?.startsWith('WorkerThread') ? 'server' : undefined;
      const call = event?.replace('syscalls:sys_enter_', '');
      if (!name || !call || !/^\d+$/.test(count ?? '')) continue;
      const counts = (result[name] ??= {});
      counts[call] = (counts[call] ?? 0) + Number(count);
    }
    return result;
  };
}

/** The remote node: an echo and a sink destination, a TLS relay to each, and an HBONE server. */
async function remote(issued: IssuedCertificate, port: MessagePort): Promise<void> {
  const certificate = WorkloadCertificate.fromIssued(issued);
  const listen = async (server: net.Server): Promise<number> => {
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    return (server.address() as net.AddressInfo).port;
  };
  const echo = await listen(net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => socket.pipe(socket)));
  const sink = await listen(
    net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      let bytes = 0;
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
      socket.on('end', () => socket.end(String(bytes)));
    }),
  );
  const tlsRelay = (destination: number): tls.Server =>
    tls.createServer({ ...certificate.tlsCredentials(), requestCert: true, allowHalfOpen: true }, (socket) => {
      socket.setNoDelay(true);
      const upstream = net.connect({ host: LOOPBACK, port: destination, allowHalfOpen: true, noDelay: true });
      socket.pipe(upstream).pipe(socket);
    });
  const server = new HboneServer({
    certificateFor: () => certificate,
    handler: async (request) => {
      const connected = await connectTarget(request.target, { signal: request.signal });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
  });
  const hbone = await listen(net.createServer((socket) => server.handleConnection(socket, { ip: LOOPBACK, port: 0 })));
  const ports: RemotePorts = { echo, sink, tlsEcho: await listen(tlsRelay(echo)), tlsSink: await listen(tlsRelay(sink)), hbone };

  let since = performance.eventLoopUtilization();
  let cpuSince = process.threadCpuUsage();
  port.on('message', (message: string) => {
    if (message === 'measure') {
      since = performance.eventLoopUtilization();
      cpuSince = process.threadCpuUsage();
      port.postMessage('ok');
    } else {
      const report: ServerReport = { busy: performance.eventLoopUtilization(since).utilization, cpuSeconds: cpuSeconds(process.threadCpuUsage(cpuSince)) };
      port.postMessage(report);
    }
  });
  port.postMessage(ports);
}
