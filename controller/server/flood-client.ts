// A hostile pod for tests, as a process of its own so that its CPU is not the controller's:
// from one source address, it keeps `connections` HTTP/2 connections open to the agent API, each
// with `streams` requests in flight, every request carrying a new random bearer token — the
// cheapest way to make a controller without limits send one TokenReview per request. A refused
// connection is opened again after a short pause.
//
//   node flood-client.ts '{"url":"https://127.0.0.1:1234","caFile":"…","servername":"weft-controller",
//                          "localAddress":"127.0.0.2","connections":24,"streams":16}'
//
// Runs until SIGTERM, then prints what it saw as one JSON line on stdout: answers by status,
// connections opened and refused.
import { connect, constants as h2 } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

interface FloodConfig {
  url: string;
  caFile: string;
  servername: string;
  localAddress: string;
  connections: number;
  streams: number;
}

export interface FloodReport {
  requests: number;
  statuses: Record<string, number>;
  connectionsOpened: number;
  connectionsRefused: number;
  retryAfterSeen: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as FloodConfig;
const ca = readFileSync(cfg.caFile);
const report: FloodReport = { requests: 0, statuses: {}, connectionsOpened: 0, connectionsRefused: 0, retryAfterSeen: 0 };
const sessions = new Set<ClientHttp2Session>();
let stopped = false;

function request(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    let req;
    try {
      req = session.request({
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: '/weft.v1/sign',
        authorization: `Bearer ${randomBytes(32).toString('base64url')}`,
        'content-type': 'application/json',
      });
    } catch {
      return resolve();
    }
    report.requests++;
    let status = 'reset';
    req.on('response', (h) => {
      status = String(h[h2.HTTP2_HEADER_STATUS]);
      if (h['retry-after'] !== undefined) report.retryAfterSeen++;
    });
    req.on('error', () => {});
    req.on('close', () => {
      report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      resolve();
    });
    req.resume();
    req.end('{"namespace":"shop","serviceAccount":"cart","csrPem":"x"}');
  });
}

async function connection(): Promise<void> {
  while (!stopped) {
    const u = new URL(cfg.url);
    const session = connect(cfg.url, {
      createConnection: () => {
        const socket = netConnect({ host: u.hostname, port: Number(u.port), localAddress: cfg.localAddress });
        socket.on('error', () => {}); // reported by the TLS socket and the session
        return tlsConnect({ socket, ca, servername: cfg.servername, ALPNProtocols: ['h2'] });
      },
    });
    sessions.add(session);
    session.on('error', () => {});
    const up = await new Promise<boolean>((resolve) => {
      session.once('connect', () => resolve(true));
      session.once('close', () => resolve(false));
    });
    if (!up) {
      report.connectionsRefused++;
      sessions.delete(session);
      await sleep(20);
      continue;
    }
    report.connectionsOpened++;
    await Promise.all(
      Array.from({ length: cfg.streams }, async () => {
        while (!stopped && !session.closed && !session.destroyed) await request(session);
      }),
    );
    session.destroy();
    sessions.delete(session);
  }
}

process.once('SIGTERM', () => {
  stopped = true;
  for (const s of sessions) s.destroy();
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
});
process.stdout.write('started\n');
await Promise.all(Array.from({ length: cfg.connections }, () => connection()));
