// A real HBONE tunnel in front of serveHttp(): mTLS with mesh-issued certificates, the agent's own
// HboneServer answering CONNECT with `serve`, and the agent's own HbonePool on the client side.
// The L7 tests that need exactly what a remote peer sends (TLS + HTTP/2 framing around the inner
// bytes, with its timing) use this instead of test-fixtures.ts's plain HTTP/2 tunnel.

import { once } from 'node:events';
import type http2 from 'node:http2';
import net from 'node:net';
import type { Test } from 'tap';
import type { WorkloadCertificate } from '../identity/certificate.ts';
import { HbonePool } from '../hbone/pool.ts';
import { HboneServer } from '../hbone/server.ts';
import { createTestMesh } from '../hbone/test-fixtures.ts';
import { serveHttp } from './serve.ts';
import { LOOPBACK, dialTcp, denyAdmin } from './test-fixtures.ts';
import type { L7Options, L7Outcome, RequestRecord } from './types.ts';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';

export type HboneFront = {
  /** Opens a tunnel stream to the upstream port through the HBONE server. */
  open(): Promise<http2.ClientHttp2Stream>;
  outcomes: Promise<L7Outcome>[];
  records: RequestRecord[];
};

/** Issued once per test process: key generation is the slow part. */
let certificates: Promise<[WorkloadCertificate, WorkloadCertificate]> | undefined;
async function issueCertificates(): Promise<[WorkloadCertificate, WorkloadCertificate]> {
  const mesh = await createTestMesh();
  return Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);
}

export async function startHboneFront(t: Test, upstreamPort: number, options: Partial<Omit<L7Options, 'dial' | 'onRequest'>> = {}): Promise<HboneFront> {
  certificates ??= issueCertificates();
  const [clientCert, serverCert] = await certificates;
  const outcomes: Promise<L7Outcome>[] = [];
  const records: RequestRecord[] = [];
  const serve = async (stream: http2.ServerHttp2Stream): Promise<void> => {
    const session = serveHttp(stream, { authorize: denyAdmin, ...options, dial: () => dialTcp(upstreamPort), onRequest: (r) => records.push(r) });
    outcomes.push(session.done);
    await session.done;
  };
  const server = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: () => Promise.resolve({ action: 'serve', serve }),
  });
  const listener = net.createServer((socket) => server.handleConnection(socket, { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }));
  listener.listen(0, LOOPBACK);
  await once(listener, 'listening');
  const port = (listener.address() as net.AddressInfo).port;
  const pool = new HbonePool({
    secureContextFor: (identity) => (identity === CLIENT ? clientCert.secureContext : undefined),
    hbonePort: port,
  });
  t.teardown(async () => {
    await pool.close({ graceMs: 50 });
    await server.close({ graceMs: 50 });
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  });
  return {
    open: () => pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: upstreamPort } }),
    outcomes,
    records,
  };
}
