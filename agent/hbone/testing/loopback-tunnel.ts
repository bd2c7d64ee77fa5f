// An HBONE server on 127.0.0.1 in front of an echo destination, with real certificates from a test
// mesh CA, and a pool client that can check a good tunnel still works: the fixture for hostile-input
// tests and fuzz targets, which must show the server survives and keeps serving.

import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { HbonePool } from '../pool.ts';
import { HboneServer, type HboneServerEvent, type HboneServerOptions } from '../server.ts';
import { connectTarget } from '../target.ts';
import { createTestMesh } from '../test-fixtures.ts';

export const LOOPBACK = '127.0.0.1';
export const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
export const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';

export type LoopbackTunnel = {
  server: HboneServer;
  /** The HBONE listener's port. */
  port: number;
  /** An echo destination's port (half-close aware). */
  echoPort: number;
  clientCert: WorkloadCertificate;
  serverCert: WorkloadCertificate;
  events: HboneServerEvent[];
  /** Opens a fresh pooled tunnel to the echo destination and checks a round trip. */
  roundTrip: (payload?: string) => Promise<string>;
  close: () => Promise<void>;
};

export async function startLoopbackTunnel(options: Partial<HboneServerOptions> = {}): Promise<LoopbackTunnel> {
  const mesh = await createTestMesh();
  const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  };
  const echo = net.createServer({ allowHalfOpen: true }, (socket) => {
    track(socket);
    socket.pipe(socket);
  });
  echo.listen(0, LOOPBACK);
  await once(echo, 'listening');

  const events: HboneServerEvent[] = [];
  const server = new HboneServer({
    certificateFor: (ip) => (ip === LOOPBACK ? serverCert : undefined),
    handler: async (request) => {
      const connected = await connectTarget(request.target, { signal: request.signal, timeoutMs: 2000 });
      return connected.ok ? { action: 'connect', socket: connected.socket } : { action: 'unreachable', reason: connected.reason };
    },
    onEvent: (event) => {
      if (events.length < 10_000) events.push(event);
    },
    ...options,
  });
  const listener = net.createServer((socket) => {
    track(socket);
    server.handleConnection(socket, { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 });
  });
  listener.listen(0, LOOPBACK);
  await once(listener, 'listening');
  const port = (listener.address() as net.AddressInfo).port;
  const echoPort = (echo.address() as net.AddressInfo).port;

  const pool = new HbonePool({ secureContextFor: () => clientCert.secureContext, hbonePort: port });
  const roundTrip = async (payload = 'still serving'): Promise<string> => {
    const stream = await pool.open({ source: CLIENT, destinationIdentity: SERVER, target: { ip: LOOPBACK, port: echoPort } });
    stream.end(payload);
    return (await readAll(stream)).toString();
  };
  const close = async (): Promise<void> => {
    await pool.close({ graceMs: 0 });
    await server.close({ graceMs: 0 });
    for (const socket of sockets) socket.destroy();
    await Promise.all([listener, echo].map((s) => new Promise((resolve) => s.close(resolve))));
  };
  return { server, port, echoPort, clientCert, serverCert, events, roundTrip, close };
}

export async function readAll(stream: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
