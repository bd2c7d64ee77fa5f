// HBONE interop with ztunnel, one end of it per process, each run inside a pod's network
// namespace by bench/references.ts:
//
//   client --ztunnel-src DIR --source ID --server-identity ID --hbone IP:PORT --target IP:PORT
//       Weft's pool (agent/hbone/pool.ts) → a ztunnel's inbound → an echo; checks the echo.
//   server --ztunnel-src DIR --identity ID --ip IP --hbone-port PORT --echo-port PORT
//       Weft's HboneServer on IP:hbone-port in front of an echo on IP:echo-port, until SIGTERM;
//       prints "ready", then one JSON line per stream it accepted.
//   plain --target IP:PORT
//       A plain TCP connection (redirected by the pod's nftables to its ztunnel's outbound);
//       checks the echo.
//
// Certificates on Weft's side come from ztunnel's test root (test-ca.ts), which its FAKE_CA also
// signs with. An echo check sends random bytes in odd-sized writes, half-closes, and requires
// exactly the same bytes back followed by the echo's own FIN. Exit code 1 with the reason on
// failure.

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { HbonePool } from '../../agent/hbone/pool.ts';
import { HboneServer } from '../../agent/hbone/server.ts';
import { connectTarget } from '../../agent/hbone/target.ts';
import { issueFromZtunnelRoot } from './test-ca.ts';

const PAYLOAD_BYTES = 3 * 1024 * 1024 + 17;
const TIMEOUT_MS = 20_000;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'ztunnel-src': { type: 'string' },
    source: { type: 'string' },
    'server-identity': { type: 'string' },
    identity: { type: 'string' },
    hbone: { type: 'string' },
    target: { type: 'string' },
    ip: { type: 'string' },
    'hbone-port': { type: 'string', default: '15008' },
    'echo-port': { type: 'string', default: '9000' },
  },
});

function required(name: keyof typeof values): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new Error(`--${name} is required`);
  return v;
}

function address(s: string): { ip: string; port: number } {
  const i = s.lastIndexOf(':');
  return { ip: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** Sends random bytes, half-closes, and requires the same bytes back, then the peer's FIN. */
async function echoCheck(stream: Duplex, what: string): Promise<void> {
  const payload = randomBytes(PAYLOAD_BYTES);
  const received: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = once(stream, 'end');
  // Uneven writes, so that the bytes cross frame and record boundaries at odd places.
  for (let at = 0, size = 1; at < payload.length; at += size, size = (size * 7 + 3) % 65_521 || 1) {
    if (!stream.write(payload.subarray(at, at + size))) await once(stream, 'drain');
  }
  stream.end();
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no end of echo within ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref());
  await Promise.race([ended, timeout]);
  const back = Buffer.concat(received);
  if (!back.equals(payload)) {
    let first = 0;
    while (first < Math.min(back.length, payload.length) && back[first] === payload[first]) first++;
    throw new Error(`${what}: sent ${payload.length} bytes, got ${back.length} back, first difference at byte ${first}`);
  }
  stream.destroy();
}

async function client(): Promise<void> {
  const source = required('source');
  const certificate = await issueFromZtunnelRoot(required('ztunnel-src'), source);
  const hbone = address(required('hbone'));
  const pool = new HbonePool({ secureContextFor: () => certificate.secureContext, hbonePort: hbone.port, connectTimeoutMs: 5000, openTimeoutMs: 5000 });
  try {
    const target = address(required('target'));
    // Two streams: the second rides the pooled connection, so multiplexing is exercised too.
    for (let i = 0; i < 2; i++) {
      const stream = await pool.open({ source, destinationIdentity: required('server-identity'), target, hboneAddress: hbone });
      await echoCheck(stream, `Weft client → ztunnel ${hbone.ip}:${hbone.port} → ${target.ip}:${target.port} (stream ${i + 1})`);
    }
  } finally {
    await pool.close({ graceMs: 100 });
  }
  console.log('ok');
}

async function plain(): Promise<void> {
  const target = address(required('target'));
  const socket = net.connect({ host: target.ip, port: target.port, allowHalfOpen: true });
  await Promise.race([once(socket, 'connect'), new Promise((_, reject) => setTimeout(() => reject(new Error(`connect ${target.ip}:${target.port} timed out`)), TIMEOUT_MS).unref())]);
  await echoCheck(socket, `plain → ${target.ip}:${target.port}`);
  console.log('ok');
}

async function server(): Promise<void> {
  const identity = required('identity');
  const ip = required('ip');
  const certificate = await issueFromZtunnelRoot(required('ztunnel-src'), identity);
  const echo = net.createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  echo.listen(Number(values['echo-port']), ip);
  await once(echo, 'listening');
  const hbone = new HboneServer({
    certificateFor: (destination) => (destination === ip ? certificate : undefined),
    handler: async (request) => {
      console.log(JSON.stringify({ stream: { peerIdentity: request.peerIdentity, target: request.target } }));
      const connected = await connectTarget(request.target, { signal: request.signal });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
    onEvent: (event) => {
      if (event.type !== 'stream-closed') console.log(JSON.stringify({ event }));
    },
  });
  const listener = net.createServer((socket) => hbone.handleConnection(socket, { ip, port: Number(values['hbone-port']) }));
  listener.listen(Number(values['hbone-port']), ip);
  await once(listener, 'listening');
  console.log('ready');
  await once(process, 'SIGTERM');
  // GOAWAY and a TLS close, so that the peer's pool sees an orderly end rather than an error.
  listener.close();
  await hbone.close({ graceMs: 500 });
  echo.close();
  process.exit(0);
}

const modes: Record<string, () => Promise<void>> = { client, server, plain };
const run = modes[positionals[0] ?? ''];
if (!run) {
  console.error('usage: interop.ts client|server|plain [options] (see the header of this file)');
  process.exit(2);
}
try {
  await run();
  if (positionals[0] !== 'server') process.exit(0);
} catch (err) {
  console.error(`interop failed: ${(err as Error).message}`);
  process.exit(1);
}
