// Run by handover.test.ts inside a network namespace of its own, with net.ipv4.tcp_migrate_req as
// the test set it. An "old agent process" (a child, stopped with SIGSTOP so it accepts nothing)
// holds port PORT with SO_REUSEPORT; a plain TCP client and an HBONE pool each get a connection
// into its accept queue; the "successor" binds the same port; then the old process dies, closing
// its listener. Prints one JSON line: how the plain client's connection ended, how the pool's
// open() ended, and how many connections the successor accepted.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { HbonePool } from '../hbone/pool.ts';
import { HboneServer } from '../hbone/server.ts';
import { connectTarget } from '../hbone/target.ts';
import { createTestMesh } from '../hbone/test-fixtures.ts';
import { CaptureListener } from '../proxy/listener.ts';

const HOST = '127.0.0.1';
const PORT = 15008;
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';
const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);
const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
echo.listen(0, HOST);
await once(echo, 'listening');
const echoPort = (echo.address() as net.AddressInfo).port;

const old = spawn(process.execPath, ['-e', `require('node:net').createServer(() => {}).listen({ host: '${HOST}', port: ${PORT}, reusePort: true }, () => console.log('listening'))`], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
// Never left behind stopped, whatever happens below.
process.on('exit', () => old.kill('SIGKILL'));
await once(old.stdout, 'data');
old.kill('SIGSTOP');

// Both handshakes complete in the kernel; the old process never accepts them.
const plain = net.connect({ host: HOST, port: PORT });
const plainEnd = new Promise<string>((resolve) => {
  plain.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  plain.on('end', () => resolve('FIN'));
});
await once(plain, 'connect');
plain.write('hello');
const pool = new HbonePool({ secureContextFor: (id) => (id === CLIENT ? clientCert.secureContext : undefined), hbonePort: PORT });
const opened = pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: HOST, port: echoPort } }).then(
  async (stream) => {
    stream.write('through');
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    stream.destroy();
    return `echoed ${chunk.toString()}`;
  },
  (e: Error & { code?: string }) => `failed ${e.code ?? ''}: ${e.message}`,
);
await sleep(200);

let accepted = 0;
const hbone = new HboneServer({
  certificateFor: (ip) => (ip === HOST ? serverCert : undefined),
  handler: async (req) => {
    const r = await connectTarget(req.target, { signal: req.signal });
    return r.ok ? { action: 'connect', socket: r.socket } : { action: 'unreachable', reason: r.reason };
  },
});
const successor = new CaptureListener(
  net.createServer((s) => {
    s.on('error', () => {});
    accepted += 1;
    // The plain client's connection, if it moved here: end it, as an agent with no use for it would.
    if (s.remotePort === plain.localPort) return void s.end();
    hbone.handleConnection(s, { ip: HOST, port: PORT });
  }),
);
await successor.listen(HOST, PORT);
old.kill('SIGKILL');
const [plainEnded, pooled] = await Promise.all([plainEnd, opened]);
console.log(JSON.stringify({ plain: plainEnded, pool: pooled, accepted }));
await pool.close({ graceMs: 0 });
await hbone.close({ graceMs: 0 });
await successor.close();
echo.close();
