// Child of splice-gc.test.ts, run by it with V8 flags that collect garbage all the time:
// applications' connections spliced to pool streams, through a real HBONE server spliced to an
// echo, several at once, so every read on both sides goes through the shared landing buffer and
// the recycled chunks (splice.ts) while collections run. Every byte that comes back is compared
// with what was sent. Prints one JSON line: bytes compared, tunnels that came back wrong (and the
// first difference), and splice.ts's counters, which show the recycled path was the one taken.
import { once } from 'node:events';
import net from 'node:net';
import { HbonePool } from './pool.ts';
import { HboneServer } from './server.ts';
import { splice, spliceReadStats } from './splice.ts';
import { connectTarget } from './target.ts';
import { createTestMesh } from './test-fixtures.ts';

const TUNNELS = Number(process.env.SPLICE_GC_TUNNELS ?? 4);
const BYTES = Number(process.env.SPLICE_GC_BYTES ?? 2 * 1024 * 1024);
/**
 * Rounds of TUNNELS tunnels at once, 8 MiB in flight per round. With 16 MiB HBONE windows, 4-6
 * tunnels of 3 MB or more at once stalled for good (each side's session stops reading while its
 * own write is stuck: settings.ts); duplex-bulk.test.ts runs this child with such loads.
 */
const ROUNDS = Number(process.env.SPLICE_GC_ROUNDS ?? 8);
const LOOPBACK = '127.0.0.1';
const CLIENT = 'spiffe://cluster.local/ns/gc/sa/client';
const SERVER = 'spiffe://cluster.local/ns/gc/sa/server';

const listen = async (server: net.Server): Promise<number> => {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
};

/** Bytes that differ per tunnel and per position, so a chunk delivered twice, late or to the wrong tunnel shows. */
function pattern(tunnel: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (tunnel + 1) * 2654435761;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);
const echo = net.createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
const echoPort = await listen(echo);
const server = new HboneServer({
  certificateFor: () => serverCert,
  handler: async (request) => {
    const connected = await connectTarget(request.target, { signal: request.signal });
    return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
  },
});
const hbone = net.createServer((socket) => server.handleConnection(socket, { ip: LOOPBACK, port: 0 }));
const pool = new HbonePool({ secureContextFor: () => clientCert.secureContext, hbonePort: await listen(hbone) });
const outbound = net.createServer({ allowHalfOpen: true }, (down) => {
  pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: echoPort } }).then(
    (stream) => void splice(stream, down),
    () => down.resetAndDestroy(),
  );
});
const outboundPort = await listen(outbound);

// --gc-interval only works in V8 debug builds; with --expose-gc a collection runs every turn of
// the event loop (a full one every 16th), between any write and the send that reads its bytes.
let collecting = typeof globalThis.gc === 'function';
let turns = 0;
const collect = (): void => {
  if (!collecting) return;
  turns++;
  void globalThis.gc?.({ type: turns % 16 === 0 ? 'major' : 'minor' });
  setImmediate(collect);
};
collect();

let wrong = 0;
let first = '';
let compared = 0;
for (let round = 0; round < ROUNDS; round++) {
await Promise.all(
  Array.from({ length: TUNNELS }, async (_, tunnel) => {
    const sent = pattern(tunnel, BYTES);
    const app = net.connect({ host: LOOPBACK, port: outboundPort, allowHalfOpen: true });
    const received: Buffer[] = [];
    app.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = once(app, 'end');
    // Uneven writes, from small to bigger than a read, so reads land both below and above the
    // size that is copied into a recycled chunk.
    for (let offset = 0, i = 0; offset < BYTES; i++) {
      const size = Math.min(BYTES - offset, [700, 9000, 17000, 70000, 200000][(tunnel + i) % 5] as number);
      if (!app.write(sent.subarray(offset, offset + size))) await once(app, 'drain');
      offset += size;
    }
    app.end();
    await ended;
    const back = Buffer.concat(received);
    compared += back.length;
    if (!back.equals(sent)) {
      wrong++;
      let at = 0;
      while (at < Math.min(back.length, sent.length) && back[at] === sent[at]) at++;
      first ||= `tunnel ${tunnel}: ${back.length} of ${sent.length} bytes back, first difference at ${at}: ${back.subarray(at, at + 16).toString('hex')} instead of ${sent.subarray(at, at + 16).toString('hex')}`;
    }
    app.destroy();
  }),
);
}
collecting = false;
console.log(JSON.stringify({ tunnels: TUNNELS * ROUNDS, compared, wrong, first, collections: turns, splice: spliceReadStats }));
outbound.close();
await pool.close({ graceMs: 100 });
await server.close({ graceMs: 100 });
hbone.close();
echo.close();
