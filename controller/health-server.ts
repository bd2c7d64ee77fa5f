// Health, readiness, metrics and agent status on :15014 (plain HTTP/1.1: scraped and probed from
// inside the cluster; nothing here is secret).
//   /healthz  200 while the process serves requests at all (liveness)
//   /readyz   200 once every watch has synced and the store holds the cluster's state; 503 with
//             the reasons otherwise, and again while shutting down
//   /metrics  Prometheus text format
//   /agents   JSON: each node's agent, connected or not, last ACK / NACK
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../api/log.ts';
import type { AgentStatus } from './server/agent-registry.ts';

export interface HealthServerOptions {
  host?: string;
  port: number;
  /** Empty when ready; otherwise what is missing, one reason per entry. */
  notReady: () => string[];
  metrics: Registry;
  agents: () => AgentStatus[];
  log: Logger;
}

export interface HealthServer {
  listen(): Promise<AddressInfo>;
  /** From now on /readyz answers 503: load balancers stop sending before the listener closes. */
  drain(): void;
  close(): Promise<void>;
}

export function createHealthServer(opts: HealthServerOptions): HealthServer {
  let draining = false;
  let server: Server | null = null;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'GET only\n');
    switch (path) {
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case '/readyz': {
        const reasons = draining ? ['shutting down'] : opts.notReady();
        return reasons.length === 0 ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', `not ready:\n${reasons.map((r) => `- ${r}\n`).join('')}`);
      }
      case '/metrics':
        return send(res, 200, opts.metrics.contentType, await opts.metrics.metrics());
      case '/agents':
        return send(res, 200, 'application/json', `${JSON.stringify(opts.agents(), null, 2)}\n`);
      default:
        return send(res, 404, 'text/plain', 'not found\n');
    }
  };

  return {
    async listen() {
      const s = createServer((req, res) => {
        handle(req, res).catch((err: unknown) => {
          opts.log.error('health request failed', { path: req.url, error: err });
          if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
          else res.destroy();
        });
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(opts.port, opts.host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      server = s;
      const addr = s.address() as AddressInfo;
      opts.log.info('health and metrics listening', { address: addr.address, port: addr.port });
      return addr;
    },
    drain() {
      draining = true;
    },
    async close() {
      const s = server;
      server = null;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
