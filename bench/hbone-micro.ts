// HBONE tunnel microbenchmark (not a test): what the tunnel adds over plain loopback TCP.
//
//   node bench/hbone-micro.ts [--round-trips 20000] [--megabytes 1024]
//
// The "remote node" (tunnel servers and destinations) runs in a worker thread so that client and
// server each have a core, as two agents would. Three paths end at the same destinations:
//   direct  loopback TCP to the destination;
//   tls     a TLS 1.3 relay with the same certificates and no HTTP/2 (a Node stand-in for stunnel,
//           to tell TLS costs from HTTP/2 costs);
//   hbone   pool -> TLS 1.3 + HTTP/2 CONNECT -> HboneServer -> TCP.
// Measured: ping-pong latency (64 B each way on one stream, p50/p99) and single-stream upload
// throughput, plus how busy each thread's event loop was during the upload.

import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { WorkloadCertificate, type IssuedCertificate } from '../agent/identity/certificate.ts';
import { HbonePool } from '../agent/hbone/pool.ts';
import { HboneServer } from '../agent/hbone/server.ts';
import { connectTarget } from '../agent/hbone/target.ts';
import { createTestMesh } from '../agent/hbone/test-fixtures.ts';

const CLIENT = 'spiffe://cluster.local/ns/bench/sa/client';
const SERVER = 'spiffe://cluster.local/ns/bench/sa/server';
const LOOPBACK = '127.0.0.1';
const MESSAGE_BYTES = 64;

type Path = 'direct' | 'tls' | 'hbone';
const PATHS: Path[] = ['direct', 'tls', 'hbone'];
/** Ports of the remote node: the destinations, and per path where the client dials for each. */
type RemotePorts = { echo: number; sink: number; tlsEcho: number; tlsSink: number; hbone: number };
type Latency = { p50: number; p99: number };
type Throughput = { gbps: number; clientBusy: number; serverBusy: number };

if (isMainThread) await main();
else await remote(workerData as IssuedCertificate, parentPort as MessagePort);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'round-trips': { type: 'string', default: '20000' }, megabytes: { type: 'string', default: '1024' } },
  });
  const roundTrips = Number(values['round-trips']);
  const megabytes = Number(values.megabytes);

  const mesh = await createTestMesh();
  const client = await mesh.issue(CLIENT);
  const server = await mesh.issue(SERVER);
  // A WorkloadCertificate cannot cross to the worker; its parts can.
  const { key } = server.tlsCredentials();
  const issued: IssuedCertificate = { identity: SERVER, keyPem: key, chainPem: server.chainPem, trustBundlePem: server.trustBundlePem };
  const worker = new Worker(new URL(import.meta.url), { workerData: issued });
  const [ports] = (await once(worker, 'message')) as [RemotePorts];

  const pool = new HbonePool({ secureContextFor: () => client.secureContext, hbonePort: ports.hbone });
  const open = async (path: Path, destination: 'echo' | 'sink'): Promise<Duplex> => {
    if (path === 'hbone') {
      return pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: ports[destination] } });
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
  const latency = {} as Record<Path, Latency>;
  const throughput = {} as Record<Path, Throughput>;
  for (const path of PATHS) latency[path] = await pingPong(await open(path, 'echo'), roundTrips);
  for (const path of PATHS) throughput[path] = await upload(await open(path, 'sink'), megabytes, worker);

  const us = (ns: number): string => (ns / 1000).toFixed(1).padStart(8);
  const x = (ratio: number): string => `${ratio.toFixed(2)}x`.padStart(8);
  console.log('\nping-pong latency         p50 µs   p99 µs  added p50  added p99');
  for (const path of PATHS) {
    const { p50, p99 } = latency[path];
    const added = path === 'direct' ? '' : `${us(p50 - latency.direct.p50)}   ${us(p99 - latency.direct.p99)}`;
    console.log(`  ${path.padEnd(20)} ${us(p50)} ${us(p99)}   ${added}`);
  }
  console.log('\nsingle-stream upload      Gbit/s  vs direct  client loop  server loop');
  for (const path of PATHS) {
    const { gbps, clientBusy, serverBusy } = throughput[path];
    const busy = (share: number): string => `${(share * 100).toFixed(0)} %`.padStart(11);
    console.log(`  ${path.padEnd(20)} ${gbps.toFixed(2).padStart(8)} ${x(gbps / throughput.direct.gbps)}  ${busy(clientBusy)}  ${busy(serverBusy)}`);
  }
  console.log(`\nhbone/tls throughput ${x(throughput.hbone.gbps / throughput.tls.gbps).trim()}, hbone added p50 ${us(latency.hbone.p50 - latency.direct.p50).trim()} µs`);

  await pool.close({ graceMs: 1000 });
  await worker.terminate();
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
async function upload(stream: Duplex, megabytes: number, worker: Worker): Promise<Throughput> {
  const chunk = Buffer.alloc(256 * 1024, 0x62);
  const total = megabytes * 1024 * 1024;
  const acknowledged = new Promise<string>((resolve) => {
    let reply = '';
    stream.on('data', (data: Buffer) => (reply += data.toString()));
    stream.on('end', () => resolve(reply));
  });
  worker.postMessage('measure');
  await once(worker, 'message');
  const clientStart = performance.eventLoopUtilization();
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  const reply = await acknowledged;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const clientBusy = performance.eventLoopUtilization(clientStart).utilization;
  worker.postMessage('report');
  const [serverBusy] = (await once(worker, 'message')) as [number];
  if (Number(reply) !== total) throw new Error(`sink received ${reply} bytes, expected ${total}`);
  return { gbps: (total * 8) / seconds / 1e9, clientBusy, serverBusy };
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
  port.on('message', (message: string) => {
    if (message === 'measure') {
      since = performance.eventLoopUtilization();
      port.postMessage('ok');
    } else {
      port.postMessage(performance.eventLoopUtilization(since).utilization);
    }
  });
  port.postMessage(ports);
}
