// The client of the routing suite, run inside a playground pod (node:http, keep-alive).
//   count <url> <requests> <concurrency> [name:value ...]
//       → one JSON line: {pods: {<x-pod>: n}, statuses: {<code>: n}, sockets: <distinct local ports>}
//   keepalive <url> <durationMs> <intervalMs>
//       → one JSON line per request, all on one connection: {t, pod, status, localPort}
import { Agent, request } from 'node:http';

const [mode, url, a, b, ...rest] = process.argv.slice(2);

function get(agent: Agent, headers: Record<string, string>): Promise<{ pod: string; status: number; localPort: number }> {
  return new Promise((resolve) => {
    const req = request(url ?? '', { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ pod: String(res.headers['x-pod'] ?? ''), status: res.statusCode ?? 0, localPort: req.socket?.localPort ?? 0 }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ pod: '', status: 0, localPort: 0 }));
    req.end();
  });
}

if (mode === 'count') {
  const total = Number(a);
  const concurrency = Number(b);
  const headers = Object.fromEntries(rest.map((h) => [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1)]));
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const pods: Record<string, number> = {};
  const statuses: Record<string, number> = {};
  const sockets = new Set<number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        const r = await get(agent, headers);
        pods[r.pod] = (pods[r.pod] ?? 0) + 1;
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        sockets.add(r.localPort);
      }
    }),
  );
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ pods, statuses, sockets: sockets.size })}\n`);
} else if (mode === 'keepalive') {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 60_000 });
  const until = Date.now() + Number(a);
  const started = Date.now();
  while (Date.now() < until) {
    const r = await get(agent, {});
    process.stdout.write(`${JSON.stringify({ t: Date.now() - started, ...r })}\n`);
    await new Promise((res) => setTimeout(res, Number(b)));
  }
  agent.destroy();
} else {
  process.stderr.write('usage: route-client.ts count|keepalive ...\n');
  process.exit(2);
}
