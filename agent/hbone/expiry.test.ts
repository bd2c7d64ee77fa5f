// Certificate expiry on long-lived HBONE connections: the handshake authenticated the connection
// once, so without these checks a pooled connection would go on carrying new tunnels after either
// side's certificate expired (the controller away for longer than a certificate lives). Both sides
// refuse independently: the pool no longer offers a connection made with a certificate that is not
// the source's current one, and the server refuses new streams on a session whose certificates
// (its own or the peer's) have expired. Tunnels opened before expiry keep working.
import t from 'tap';
import type { Test } from 'tap';
import { once } from 'node:events';
import net from 'node:net';
import { MeshCa } from '../../controller/ca/ca.ts';
import { createRoot } from '../../controller/ca/root.ts';
import { WorkloadCertificate } from '../identity/certificate.ts';
import { generateKeyAndCsr } from '../identity/csr.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { HbonePool } from './pool.ts';
import { HboneServer } from './server.ts';
import { connectTarget } from './target.ts';
import type tls from 'node:tls';

const LOOPBACK = '127.0.0.1';
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';
const SHORT_MS = 2500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const { root } = await createRoot({ trustDomain: 'cluster.local' });
async function issue(identity: string, ttlMs: number): Promise<WorkloadCertificate> {
  const ca = new MeshCa(root, { ttlMs, backdateMs: 0 });
  const { namespace, serviceAccount } = parseSpiffeId(identity);
  const { keyPem, csrPem } = await generateKeyAndCsr(identity);
  const signed = await ca.sign(csrPem, { namespace, serviceAccount });
  return WorkloadCertificate.fromIssued({ identity, keyPem, chainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem });
}

/** An HBONE server in front of an echo server; `clientContext` is what the pool presents. */
async function setup(t: Test, serverCert: WorkloadCertificate, clientContext: () => tls.SecureContext | undefined) {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const echo = net.createServer((s) => {
    track(s);
    s.pipe(s);
  });
  echo.listen(0, LOOPBACK);
  await once(echo, 'listening');
  const server = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: async (request) => {
      const connected = await connectTarget(request.target, { signal: request.signal, timeoutMs: 2000 });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
  });
  const listener = net.createServer((s) => {
    track(s);
    server.handleConnection(s, { ip: s.localAddress ?? '', port: s.localPort ?? 0 });
  });
  listener.listen(0, LOOPBACK);
  await once(listener, 'listening');
  const pool = new HbonePool({ secureContextFor: clientContext, hbonePort: (listener.address() as net.AddressInfo).port });
  const echoPort = (echo.address() as net.AddressInfo).port;
  t.teardown(async () => {
    await pool.close({ graceMs: 0 });
    await server.close({ graceMs: 0 });
    for (const s of sockets) s.destroy();
    await Promise.all([listener, echo].map((s) => new Promise((r) => s.close(r))));
  });
  const open = () => pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: echoPort } });
  /** One line through a held tunnel. */
  const echoes = async (stream: Awaited<ReturnType<typeof open>>, line: string) => {
    const got = once(stream, 'data');
    stream.write(line);
    return ((await got)[0] as Buffer).toString();
  };
  return { server, pool, open, echoes };
}

t.test('the pool puts no new tunnel on a connection made with a renewed or expired certificate', async (t) => {
  const serverCert = await issue(SERVER, 60_000);
  const first = await issue(CLIENT, 60_000);
  const renewed = await issue(CLIENT, 60_000);
  let current: WorkloadCertificate | undefined = first;
  const { server, pool, open, echoes } = await setup(t, serverCert, () => current?.secureContext);
  const held = await open();
  t.equal(await echoes(held, 'a'), 'a');
  const second = await open();
  t.equal(server.stats().connectionsAccepted, 1, 'same certificate: the connection is shared');
  second.destroy();
  current = renewed;
  const third = await open();
  t.equal(server.stats().connectionsAccepted, 2, 'renewed certificate: a new connection');
  t.equal(pool.snapshot().length, 1, 'the old connection left the pool');
  current = undefined;
  await t.rejects(open(), { code: 'NO_CERTIFICATE' }, 'expired: no tunnel at all, not one on an open connection');
  t.equal(await echoes(held, 'b'), 'b', 'a tunnel opened before keeps working');
  t.equal(await echoes(third, 'c'), 'c');
  held.destroy();
  third.destroy();
});

t.test('the server refuses new streams once a certificate of the session expired; open ones go on', async (t) => {
  for (const [side, serverTtl, clientTtl] of [
    ['its own', SHORT_MS, 60_000],
    ["the peer's", 60_000, SHORT_MS],
  ] as const) {
    const serverCert = await issue(SERVER, serverTtl);
    const clientCert = await issue(CLIENT, clientTtl);
    // This pool ignores expiry: what a peer without the pool's check would do.
    const { server, open, echoes } = await setup(t, serverCert, () => clientCert.secureContext);
    const held = await open();
    t.equal(await echoes(held, 'a'), 'a');
    await sleep(Math.max(0, Math.min(serverCert.notAfter.getTime(), clientCert.notAfter.getTime()) - Date.now()) + 100);
    await t.rejects(open(), `${side} certificate expired: the new stream is refused`);
    t.ok(server.stats().streamsRejected >= 1, 'refused by the server');
    t.equal(await echoes(held, 'b'), 'b', 'the tunnel opened before expiry keeps working');
    held.destroy();
  }
});
