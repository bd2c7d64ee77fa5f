// What an idle tunnelled connection costs each agent (not a test): the outbound agent (an
// application's connection spliced to a pool stream) and the inbound agent (the server's stream
// spliced to its destination) each run in their own process, as on two nodes, and the
// applications and destinations in a third. Reported per process, after a full collection: RSS
// split into anonymous and file-backed memory, V8 heap used, external memory, and the growth per
// idle connection of each.
//
//   node bench/idle-memory.ts [--connections 1000] [-- <node flags for the two agents>]
//
// e.g. `node bench/idle-memory.ts -- --max-semi-space-size=1` to try a flag on both agents.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { IssuedCertificate } from '../agent/identity/certificate.ts';

const LOOPBACK = '127.0.0.1';
const CLIENT = 'spiffe://cluster.local/ns/bench/sa/client';
const SERVER = 'spiffe://cluster.local/ns/bench/sa/server';

type Sample = { rssMB: number; anonMB: number; fileMB: number; heapMB: number; externalMB: number };
type Message = { ready?: number; sample?: Sample };

const role = process.argv[2];
if (role === 'server' || role === 'client') await agent(role);
else await main();

function sample(): Sample {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
  const m = process.memoryUsage();
  return { rssMB: kb('VmRSS'), anonMB: kb('RssAnon'), fileMB: kb('RssFile'), heapMB: m.heapUsed / 2 ** 20, externalMB: m.external / 2 ** 20 };
}

async function agent(which: 'server' | 'client'): Promise<void> {
  const { WorkloadCertificate } = await import('../agent/identity/certificate.ts');
  const { splice } = await import('../agent/hbone/splice.ts');
  const issued = JSON.parse(process.env.IDLE_MEMORY_CERT ?? '') as IssuedCertificate;
  const cert = WorkloadCertificate.fromIssued(issued);
  let port: number;
  if (which === 'server') {
    const { HboneServer } = await import('../agent/hbone/server.ts');
    const { connectTarget } = await import('../agent/hbone/target.ts');
    const target = Number(process.env.IDLE_MEMORY_TARGET);
    const server = new HboneServer({
      certificateFor: () => cert,
      handler: async () => {
        const r = await connectTarget({ ip: LOOPBACK, port: target });
        return r.ok ? { action: 'connect', socket: r.socket } : { action: 'unreachable', reason: r.reason };
      },
    });
    const listener = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => server.handleConnection(s, { ip: LOOPBACK, port: 0 }));
    listener.listen(0, LOOPBACK);
    await once(listener, 'listening');
    port = (listener.address() as net.AddressInfo).port;
  } else {
    const { HbonePool } = await import('../agent/hbone/pool.ts');
    const pool = new HbonePool({ secureContextFor: () => cert.secureContext, hbonePort: Number(process.env.IDLE_MEMORY_HBONE) });
    const target = { ip: LOOPBACK, port: Number(process.env.IDLE_MEMORY_TARGET) };
    const listener = net.createServer({ noDelay: true, allowHalfOpen: true }, (down) => {
      void pool.open({ source: CLIENT, destinationIdentity: SERVER, target }).then(
        (stream) => splice(stream, down),
        () => down.destroy(),
      );
    });
    listener.listen(0, LOOPBACK);
    await once(listener, 'listening');
    port = (listener.address() as net.AddressInfo).port;
  }
  process.on('message', (m) => {
    if (m === 'sample') process.send?.({ sample: sample() } satisfies Message);
  });
  process.send?.({ ready: port } satisfies Message);
}

async function main(): Promise<void> {
  const dash = process.argv.indexOf('--');
  const flags = dash >= 0 ? process.argv.slice(dash + 1) : [];
  const { values } = parseArgs({ args: dash >= 0 ? process.argv.slice(2, dash) : process.argv.slice(2), options: { connections: { type: 'string', default: '1000' } } });
  const count = Number(values.connections);
  const { createTestMesh } = await import('../agent/hbone/test-fixtures.ts');
  const mesh = await createTestMesh();
  const issue = async (id: string): Promise<IssuedCertificate> => {
    const c = await mesh.issue(id);
    return { identity: id, keyPem: c.tlsCredentials().key, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem };
  };

  // Destinations: echo one byte, then hold the connection.
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('data', (d) => s.write(d)));
  echo.listen(0, LOOPBACK);
  await once(echo, 'listening');
  const echoPort = (echo.address() as net.AddressInfo).port;

  const start = async (which: 'server' | 'client', env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> => {
    const child = fork(new URL(import.meta.url).pathname, [which], { execArgv: [...process.execArgv, ...flags], env: { ...process.env, ...env } });
    const [m] = (await once(child, 'message')) as [Message];
    return { child, port: m.ready ?? 0 };
  };
  const server = await start('server', { IDLE_MEMORY_CERT: JSON.stringify(await issue(SERVER)), IDLE_MEMORY_TARGET: String(echoPort) });
  const client = await start('client', { IDLE_MEMORY_CERT: JSON.stringify(await issue(CLIENT)), IDLE_MEMORY_HBONE: String(server.port), IDLE_MEMORY_TARGET: String(echoPort) });
  const measure = async (): Promise<{ client: Sample; server: Sample }> => {
    await new Promise((r) => setTimeout(r, 1500));
    const ask = async (c: ChildProcess): Promise<Sample> => {
      c.send('sample');
      const [m] = (await once(c, 'message')) as [Message];
      return m.sample as Sample;
    };
    return { client: await ask(client.child), server: await ask(server.child) };
  };

  // One connection first, so that the pool's tunnel connection is not counted per stream.
  const apps: net.Socket[] = [];
  const openOne = async (): Promise<void> => {
    const app = net.connect({ host: LOOPBACK, port: client.port, noDelay: true });
    apps.push(app);
    await once(app, 'connect');
    app.write('x');
    await once(app, 'data');
  };
  await openOne();
  const before = await measure();
  for (let i = 1; i < count; i++) await openOne();
  const held = await measure();

  console.log(`idle tunnelled connections: ${count}, agent flags: ${flags.join(' ') || '(none)'}, Node ${process.version}`);
  const fields: (keyof Sample)[] = ['rssMB', 'anonMB', 'fileMB', 'heapMB', 'externalMB'];
  console.log(`${'process'.padEnd(8)}${fields.map((f) => `${f.replace('MB', '')} MB`.padStart(22)).join('')}`);
  for (const which of ['client', 'server'] as const) {
    const cells = fields.map((f) => {
      const a = before[which][f];
      const b = held[which][f];
      return `${a.toFixed(1)}→${b.toFixed(1)} (${(((b - a) * 1024) / (count - 1)).toFixed(1)} KB)`.padStart(22);
    });
    console.log(`${which.padEnd(8)}${cells.join('')}`);
  }
  for (const app of apps) app.destroy();
  client.child.kill();
  server.child.kill();
  echo.close();
}
