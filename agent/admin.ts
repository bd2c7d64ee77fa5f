// The agent's small HTTP endpoints: Prometheus metrics (15020, all interfaces), readiness and
// liveness (15021), and the admin dump (15000, localhost only: it shows workloads and
// connections, never key material; and POST /release_memory, to tell retained memory from
// garbage not yet collected).
//
// All three bind with SO_REUSEPORT: during an upgrade the new agent process binds them while the
// old one still runs (and the kubelet probes the node's 15021, which either may answer: the
// readiness source accounts for that, see handover.ts). A draining process closes its metrics and
// admin endpoints first, so that the node's are the new process's; health stays until it exits.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenShared } from './listen.ts';
import { renderMetrics, wantsOpenMetrics } from './metrics.ts';

export interface AdminSources {
  /** Sections of /config_dump, each produced on demand (data-plane workers answer by message). */
  dump: Record<string, () => unknown>;
  /** The node's metrics when they are not all in this thread's registry (workers.ts). */
  metrics?: (openMetrics: boolean) => Promise<{ contentType: string; text: string }>;
  /**
   * POST /release_memory: a full collection and malloc_trim now (native/trim.ts), answered with
   * the memory levels before and after. Localhost only, like the dump.
   */
  releaseMemory?: () => unknown;
  /** Why the agent is not ready, or undefined when it is. */
  notReady: () => string | undefined | Promise<string | undefined>;
}

export interface AgentEndpoints {
  metrics: Server;
  health: Server;
  admin: Server;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

async function serve(host: string, port: number, handler: Handler): Promise<Server> {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((e: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
    });
  });
  await listenShared(server, { host, port });
  return server;
}

const json = (res: ServerResponse, status: number, body: unknown) =>
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body, null, 2)}\n`);

export async function startEndpoints(src: AdminSources, ports = { metrics: 15020, health: 15021, admin: 15000 }, bind = '0.0.0.0'): Promise<AgentEndpoints> {
  const metrics = await serve(bind, ports.metrics, async (req, res) => {
    if (req.url !== '/metrics' && req.url !== '/stats/prometheus') return void res.writeHead(404).end();
    // OpenMetrics (with exemplars) only for a scraper that asks for it.
    const openMetrics = wantsOpenMetrics(req.headers.accept);
    const m = src.metrics ? await src.metrics(openMetrics) : await renderMetrics(openMetrics);
    res.writeHead(200, { 'content-type': m.contentType }).end(m.text);
  });
  const health = await serve(bind, ports.health, async (req, res) => {
    if (req.url === '/healthz/live' || req.url === '/livez') return void res.writeHead(200).end('ok\n');
    if (req.url === '/healthz/ready' || req.url === '/readyz') {
      const why = await src.notReady();
      return void (why ? res.writeHead(503).end(`${why}\n`) : res.writeHead(200).end('ready\n'));
    }
    res.writeHead(404).end();
  });
  const admin = await serve('127.0.0.1', ports.admin, async (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // POST only: a collection pauses the thread, which a GET of the wrong path must not cost.
    if (path === '/release_memory' && src.releaseMemory) {
      if (req.method !== 'POST') return void json(res, 405, { error: 'POST /release_memory' });
      return void json(res, 200, src.releaseMemory());
    }
    if (path === '/config_dump') return void json(res, 200, Object.fromEntries(await Promise.all(Object.entries(src.dump).map(async ([k, f]) => [k, await f()]))));
    const f = src.dump[path.slice(1)];
    if (f) return void json(res, 200, await f());
    json(res, 404, { error: `unknown path ${path}`, paths: ['/config_dump', ...Object.keys(src.dump).map((k) => `/${k}`)] });
  });
  return { metrics, health, admin };
}
