// The upstream pool with real sockets on loopback: connections are kept and reused, a failed open
// surfaces as an UpstreamOpenError that says whether policy refused it, and a connection whose far
// end finished leaves the pool instead of taking the next request.
import t from 'tap';
import { createServer, request, type RequestOptions } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { UpstreamOpenError, UpstreamPool, type PoolRequestOptions } from './pool.ts';
import type { UpstreamResult } from './upstream.ts';

const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => res.end(req.url === '/close' ? 'bye' : 'ok'));
const accepted: Socket[] = [];
server.on('connection', (s: Socket) => accepted.push(s));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const port = (server.address() as AddressInfo).port;
t.teardown(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));

let opened = 0;
const open = async (): Promise<UpstreamResult> => {
  opened++;
  // Half-open capable, like the agent's own dials (hbone/target.ts) and HBONE streams.
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => s.once('connect', r));
  return { ok: true, stream: s };
};

function get(pool: UpstreamPool, path: string, weftOpen: PoolRequestOptions['weftOpen'] = open): Promise<{ status: number; reused: boolean } | { error: Error }> {
  return new Promise((resolve) => {
    const req = request({ host: '10.0.0.9', port: 80, path, agent: pool, weftOpen } as RequestOptions);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => setTimeout(() => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }), 5));
    });
    req.on('error', (error) => resolve({ error }));
    req.end();
  });
}

t.test('requests share one kept-alive connection', async (t) => {
  const pool = new UpstreamPool();
  opened = 0;
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await get(pool, '/'));
  t.equal(opened, 1, 'one connection opened for five requests');
  t.same(results.map((r) => ('reused' in r ? r.reused : r.error.message)), [false, true, true, true, true]);
  pool.destroy();
});

t.test('a connection the far end finished is not reused', async (t) => {
  const pool = new UpstreamPool();
  opened = 0;
  await get(pool, '/');
  // The server ends its side of the idle connection (as a pod's keep-alive timeout does).
  accepted.at(-1)?.end();
  await new Promise((r) => setTimeout(r, 50));
  const r = await get(pool, '/');
  t.same(r, { status: 200, reused: false }, 'a fresh connection answered');
  t.equal(opened, 2);
  pool.destroy();
});

t.test('a refused open is an UpstreamOpenError that says so', async (t) => {
  const pool = new UpstreamPool();
  const r = await get(pool, '/', async () => ({ ok: false, reason: 'TUNNEL_REJECTED', refused: true }));
  t.ok('error' in r && r.error instanceof UpstreamOpenError && r.error.refused && r.error.message === 'TUNNEL_REJECTED');
  pool.destroy();
});
