// The pieces of a hitless agent upgrade, with real sockets, real TLS 1.3 and real HTTP/2 over
// 127.0.0.1: two "agent processes" (two sets of servers in this process, as the kernel treats two
// SO_REUSEPORT listeners of one user alike) share the ports; the old one drains while the new one
// takes new connections. The end-to-end proof on a playground is tests/upgrade.test.ts.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, lstat } from 'node:fs/promises';
import type http2 from 'node:http2';
import { createServer, request } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createCniServer } from './cni/server.ts';
import { RecordingEnroller } from './cni/test-enroller.ts';
import { AgentSocket, queryAgent, type AgentStatus } from './handover.ts';
import { HbonePool } from './hbone/pool.ts';
import { HboneServer } from './hbone/server.ts';
import { connectTarget } from './hbone/target.ts';
import { createTestMesh } from './hbone/test-fixtures.ts';
import { BIND_RETRY_MS } from './listen.ts';
import { CaptureListener } from './proxy/listener.ts';
import { OwnedSocketPath, someoneListens } from './unix-socket.ts';

const LOOPBACK = '127.0.0.1';
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';
const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-handover-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A TCP echo destination; returns its port. */
async function startEcho(t: Test): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  t.teardown(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A capture listener that tags each accepted connection with `name` and echoes after it. */
function taggingEcho(name: string): CaptureListener {
  return new CaptureListener(
    net.createServer((s) => {
      s.on('error', () => {});
      s.write(`${name}\n`);
      s.pipe(s);
    }),
  );
}

async function connect(port: number): Promise<{ socket: net.Socket; tag: string }> {
  const socket = net.connect({ host: LOOPBACK, port });
  socket.on('error', () => {});
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return { socket, tag: chunk.toString().trim() };
}

async function echo(socket: net.Socket, text: string): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, LOOPBACK);
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

t.test('two listeners share a port; the draining one keeps its connections and hands new ones over', async (t) => {
  const port = await freePort();
  const old = taggingEcho('old');
  const successor = taggingEcho('new');
  await old.listen(LOOPBACK, port);
  const held = await connect(port);
  t.equal(held.tag, 'old', 'before the upgrade, the old process serves');

  await successor.listen(LOOPBACK, port);
  t.teardown(() => successor.close());
  let drained = false;
  const draining = old.drain().then(() => (drained = true));

  const fresh = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
  t.same(new Set(fresh.map((c) => c.tag)), new Set(['new']), 'every new connection reaches the new process');
  t.equal(await echo(held.socket, 'still here'), 'still here', 'the held connection still carries data');
  await sleep(50);
  t.notOk(drained, 'not drained while a connection is open');
  held.socket.end();
  await draining;
  t.ok(drained, 'drained once its last connection ended');
  for (const c of fresh) c.socket.destroy();
});

t.test('close() after the deadline resets what is left, and the peer sees a reset', async (t) => {
  const port = await freePort();
  const listener = taggingEcho('old');
  await listener.listen(LOOPBACK, port);
  const held = await connect(port);
  const ended = new Promise<string>((resolve) => {
    held.socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    held.socket.once('end', () => resolve('FIN'));
  });
  void listener.drain();
  await listener.close();
  t.equal(await ended, 'ECONNRESET', 'a reset, never a clean FIN that would hide the cut');
});

t.test('a port held without SO_REUSEPORT (an agent from before it) is bound once that process lets go', async (t) => {
  const port = await freePort();
  const legacy = net.createServer((s) => s.end('legacy\n'));
  legacy.listen({ host: LOOPBACK, port });
  await once(legacy, 'listening');
  const successor = taggingEcho('new');
  let bound = false;
  const binding = successor.listen(LOOPBACK, port).then(() => (bound = true));
  t.teardown(() => successor.close());
  await sleep(2 * BIND_RETRY_MS);
  t.notOk(bound, 'waits while the port cannot be shared');
  legacy.close();
  await binding;
  t.equal((await connect(port)).tag, 'new', 'then binds and serves');
});

interface TunnelSide {
  hbone: HboneServer;
  listener: CaptureListener;
  connections: () => number;
}

/** One "agent process" worth of HBONE server: a capture listener handing sockets to an HboneServer. */
async function startTunnelSide(t: Test, port: number): Promise<TunnelSide> {
  let connections = 0;
  const hbone = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: async (req) => {
      const r = await connectTarget(req.target, { signal: req.signal });
      return r.ok ? { action: 'connect', socket: r.socket } : { action: 'unreachable', reason: r.reason };
    },
  });
  const listener = new CaptureListener(
    net.createServer((s) => {
      connections += 1;
      hbone.handleConnection(s, { ip: LOOPBACK, port });
    }),
  );
  await listener.listen(LOOPBACK, port);
  t.teardown(async () => {
    await hbone.close({ graceMs: 0 });
    await listener.close();
  });
  return { hbone, listener, connections: () => connections };
}

function startPool(t: Test, port: number): HbonePool {
  const pool = new HbonePool({ secureContextFor: (id) => (id === CLIENT ? clientCert.secureContext : undefined), hbonePort: port });
  t.teardown(() => pool.close({ graceMs: 0 }));
  return pool;
}

const open = (pool: HbonePool, target: number): Promise<http2.ClientHttp2Stream> =>
  pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: target } });

async function roundTrip(stream: http2.ClientHttp2Stream, text: string): Promise<string> {
  stream.write(text);
  const [chunk] = (await once(stream, 'data')) as [Buffer];
  return chunk.toString();
}

t.test('HBONE: the old server sends GOAWAY, its open streams run to their end, new tunnels reach the new one', async (t) => {
  const echoPort = await startEcho(t);
  const port = await freePort();
  const old = await startTunnelSide(t, port);
  const pool = startPool(t, port);
  const held = await Promise.all(Array.from({ length: 5 }, () => open(pool, echoPort)));
  t.equal(old.connections(), 1, 'five streams on one pooled connection to the old server');

  const successor = await startTunnelSide(t, port);
  let drained = false;
  const draining = Promise.all([old.listener.drain(), old.hbone.drain()]).then(() => (drained = true));
  await sleep(50); // the GOAWAY reaches the pool

  const fresh = await open(pool, echoPort);
  t.equal(await roundTrip(fresh, 'new'), 'new', 'a new tunnel works');
  t.equal(successor.connections(), 1, 'on a new connection, to the new server');
  t.equal(old.connections(), 1, 'the old server took no new connection');
  for (const [i, s] of held.entries()) t.equal(await roundTrip(s, `held-${i}`), `held-${i}`, `held stream ${i} still carries data`);

  t.notOk(drained, 'the old server is not drained while streams are open');
  for (const s of held) s.end();
  await draining;
  t.ok(drained, 'drained once the last stream ended: its tunnel connection closed too');
  fresh.end();
});

t.test('HBONE: a connection that arrives while the server drains is served, then gets its GOAWAY', async (t) => {
  const echoPort = await startEcho(t);
  const port = await freePort();
  const old = await startTunnelSide(t, port);
  void old.hbone.drain(); // the listener still accepts: the connection races the listener's close
  const pool = startPool(t, port);
  const late = await open(pool, echoPort);
  t.equal(await roundTrip(late, 'late'), 'late', 'its first stream is served, not refused');
  t.equal(pool.snapshot().length, 1, 'pooled for now');
  await sleep(1300);
  t.equal(pool.snapshot().length, 0, 'then GOAWAY took it out of the pool');
  t.equal(await roundTrip(late, 'still'), 'still', 'and its stream still runs');
  late.end();
});

t.test('HBONE: a new tunnel connection reset before its handshake (the old listener closed with it queued) is retried', async (t) => {
  // On a node without net.ipv4.tcp_migrate_req, the old agent process closing its 15008 listener
  // resets the connections still in its accept queue; the next connection reaches the successor.
  // Here one listener plays both: it resets the first connection and serves the next.
  const echoPort = await startEcho(t);
  const port = await freePort();
  const hbone = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: async (req) => {
      const r = await connectTarget(req.target, { signal: req.signal });
      return r.ok ? { action: 'connect', socket: r.socket } : { action: 'unreachable', reason: r.reason };
    },
  });
  let accepted = 0;
  const listener = new CaptureListener(
    net.createServer((s) => {
      s.on('error', () => {});
      if (++accepted === 1) return void s.resetAndDestroy();
      hbone.handleConnection(s, { ip: LOOPBACK, port });
    }),
  );
  await listener.listen(LOOPBACK, port);
  t.teardown(async () => {
    await hbone.close({ graceMs: 0 });
    await listener.close();
  });
  const pool = startPool(t, port);
  const stream = await open(pool, echoPort);
  t.equal(await roundTrip(stream, 'retried'), 'retried', 'the tunnel opens, its application bytes untouched by the reset');
  t.equal(accepted, 2, 'on a second connection');
  stream.end();
});

t.test('the kernel: without tcp_migrate_req a closing listener resets what it queued, and the pool retries its tunnel', async (t) => {
  // Real sockets in a namespace of their own (testdata/queued-tunnel-harness.ts): the window the
  // test above stands in for, and what the sysctl changes.
  const harness = new URL('./testdata/queued-tunnel-harness.ts', import.meta.url).pathname;
  const run = (migrate: 0 | 1): { plain: string; pool: string; accepted: number } => {
    const ns = `hov-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.tcp_migrate_req=${migrate}`]);
      const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, harness], { encoding: 'utf8', timeout: 60_000 });
      return JSON.parse(out.trim().split('\n').pop() ?? '') as { plain: string; pool: string; accepted: number };
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  };
  const off = run(0);
  t.equal(off.plain, 'ECONNRESET', 'tcp_migrate_req=0: a connection queued at the old listener is reset when it closes');
  t.equal(off.pool, 'echoed through', 'the pool retried its reset tunnel connection, which reached the successor');
  t.equal(off.accepted, 1, 'the successor accepted only the retry');
  const on = run(1);
  t.equal(on.plain, 'FIN', 'tcp_migrate_req=1: the queued connection moved to the successor instead');
  t.equal(on.pool, 'echoed through', 'and so did the tunnel connection');
  t.equal(on.accepted, 2, 'the successor accepted both');
});

t.test('pool drain: no new streams on the old connections, the open ones continue', async (t) => {
  const echoPort = await startEcho(t);
  const port = await freePort();
  const server = await startTunnelSide(t, port);
  const pool = startPool(t, port);
  const held = await open(pool, echoPort);
  let drained = false;
  const draining = pool.drain().then(() => (drained = true));
  const later = await open(pool, echoPort);
  t.equal(server.connections(), 2, 'a stream opened after drain() gets a connection of its own');
  t.equal(await roundTrip(held, 'held'), 'held', 'the stream open before drain() still carries data');
  await sleep(50);
  t.notOk(drained, 'not drained while the old connection has a stream');
  held.end();
  await once(held, 'end');
  await draining;
  t.ok(drained, 'drained once the old connection had no stream left');
  t.equal(await roundTrip(later, 'later'), 'later', 'the later stream is untouched');
  later.end();
});

function status(pid: number, notReady?: string): () => AgentStatus {
  return () => ({ pid, version: 'test', startedAt: new Date(0).toISOString(), draining: false, ...(notReady ? { notReady } : {}) });
}

t.test('agent socket: the newest process owns the path; the old one answers with its successor', async (t) => {
  const path = join(await tempDir(t), 'agent.sock');
  t.notOk(await someoneListens(path), 'nobody before the first agent');
  const old = await AgentSocket.open(path, status(1));
  t.ok(await someoneListens(path), 'a second agent finds its predecessor');
  t.equal(await old.successor(), undefined, 'no successor yet');

  let successorReady: string | undefined = 'no certificate yet';
  const successor = await AgentSocket.open(path, () => status(2, successorReady)());
  t.equal((await queryAgent(path)).pid, 2, 'the path now reaches the new process');
  t.match(await old.successor(), { pid: 2, notReady: 'no certificate yet' }, "the old one reports the successor's readiness");
  successorReady = undefined;
  t.match(await old.successor(), { pid: 2 }, 'and follows it');
  t.equal((await old.successor())?.notReady, undefined);

  // Both stopped by one `helm uninstall`: the old one waits for the successor's stop decision.
  const readiness: { stopDecision?: AgentStatus['stopDecision'] } = {};
  const stopping = await AgentSocket.open(path, () => ({ ...status(3, 'draining')(), draining: true, ...(readiness.stopDecision ? { stopDecision: readiness.stopDecision } : {}) }));
  t.equal((await old.successor())?.stopDecision, undefined, 'no decision before it is made');
  readiness.stopDecision = { uninstall: true, reason: 'DaemonSet weft-system/weft-agent is being deleted' };
  t.same((await old.successor())?.stopDecision, readiness.stopDecision, "the successor's decision reaches the old process");
  await stopping.close();
  await successor.close();
  const successorAgain = await AgentSocket.open(path, status(2));

  await old.close();
  t.equal((await queryAgent(path)).pid, 2, "the old one's exit leaves the successor's socket in place");
  await successorAgain.close();
  await t.rejects(lstat(path), { code: 'ENOENT' }, 'the last one removes it');
});

t.test('agent socket takeover never leaves the path without a listener', async (t) => {
  const path = join(await tempDir(t), 'agent.sock');
  // As on a node, each replaced process lives on (draining) while its successor serves.
  const processes = [await AgentSocket.open(path, status(0))];
  const failures: string[] = [];
  let answers = 0;
  let stop = false;
  const client = (async () => {
    while (!stop) {
      try {
        await queryAgent(path);
        answers += 1;
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  })();
  for (let pid = 1; pid <= 20; pid++) {
    processes.push(await AgentSocket.open(path, status(pid)));
    await sleep(5);
  }
  stop = true;
  await client;
  t.equal((await queryAgent(path)).pid, 20, 'the last one owns the path');
  for (const p of processes) await p.close();
  t.ok(answers > 20, `${answers} answers during 20 takeovers`);
  t.same(failures, [], 'no request found the path empty or dead');
});

t.test("the path is bound again when an older agent's exit removes it", async (t) => {
  const socketPath = join(await tempDir(t), 'cni.sock');
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  // An agent from before this change: bound at the path itself, so its close unlinks it (libuv).
  const legacy = createCniServer({ socketPath, enroller: new RecordingEnroller(), log: quiet });
  await legacy.listen();
  let rebound = 0;
  const successor = new OwnedSocketPath({ path: socketPath, mode: 0o600, create: () => createServer((_req, res) => res.end('new')), checkEveryMs: 50, onRebound: () => rebound++ });
  await successor.listen();
  t.teardown(() => successor.close());
  await legacy.close();
  await t.rejects(lstat(socketPath), { code: 'ENOENT' }, "the legacy agent's exit removed the path");
  await sleep(200);
  t.equal(rebound, 1, 'the successor noticed');
  t.equal(await get(socketPath), 'new', 'and answers at the path again');
});

function get(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/', agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('CNI socket: a new agent takes a live socket over; the old one finishes and leaves it', async (t) => {
  const socketPath = join(await tempDir(t), 'cni.sock');
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const oldEnroller = new RecordingEnroller();
  oldEnroller.enrolDelayMs = 300;
  const old = createCniServer({ socketPath, enroller: oldEnroller, log: quiet, takeOver: true });
  await old.listen();
  const add = JSON.stringify({
    pod: { namespace: 'mesh-shop', name: 'cart-0', uid: 'uid-1' },
    containerId: 'c0ffee',
    ifname: 'eth0',
    netns: '/run/netns/cart-0',
    ips: ['10.1.0.7'],
    hostInterface: 'veth0a1b',
  });
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const req = request({ socketPath, method: 'POST', path: '/v1/pods/add', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(add);
    });
  const inFlight = post();
  await sleep(50); // the old agent is enrolling

  const newEnroller = new RecordingEnroller();
  const successor = createCniServer({ socketPath, enroller: newEnroller, log: quiet, takeOver: true });
  await successor.listen();
  t.teardown(() => successor.close());
  t.equal(await post(), 200, 'a request after the takeover is answered');
  t.equal(newEnroller.calls.length, 1, 'by the new agent');
  await old.close({ graceMs: 5000 });
  t.equal(await inFlight, 200, 'the request the old agent had in progress completed');
  t.equal(oldEnroller.calls.length, 1, 'and the old agent took no other');
  t.equal(await post(), 200, "the old agent's exit left the new one's socket in place");
  t.equal(newEnroller.calls.length, 2);
});
