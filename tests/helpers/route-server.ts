// A backend for the routing suite, run inside a playground pod: HTTP/1.1 on :8080 that says who
// answered (`x-pod` and the body) and what it received, so a test can see where a route sent a
// request and what the filters did to it.
//   node tests/helpers/route-server.ts <name> [status]
//   any path      → <status> (default 200), body: JSON {pod, method, path, headers}
//   /delay/<ms>   → the same, after <ms> milliseconds
//   /__seen       → JSON list of the last 5,000 other requests received (a mirror backend's copies:
//                   method, path, headers, body length and its first 1 KiB), not itself recorded
//   node tests/helpers/route-server.ts <name> <status> <delay-ms>: every answer after <delay-ms>
import { createServer } from 'node:http';

const name = process.argv[2] ?? 'unnamed';
const status = Number(process.argv[3] ?? '200');
const everyDelay = Number(process.argv[4] ?? '0');
const seen: { method?: string; path?: string; headers: object; bodyLength: number; body: string }[] = [];

createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/__seen') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(seen));
    }
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method, path: req.url, headers: req.headers, bodyLength: body.length, body: body.subarray(0, 1024).toString() });
    if (seen.length > 5000) seen.shift();
    const delay = /^\/delay\/(\d{1,6})/.exec(req.url ?? '')?.[1] ?? (everyDelay > 0 ? String(everyDelay) : undefined);
    const answer = () => {
      const body = JSON.stringify({ pod: name, method: req.method, path: req.url, headers: req.headers });
      res.writeHead(status, { 'content-type': 'application/json', 'x-pod': name, 'x-backend-header': 'present' });
      res.end(body);
    };
    if (delay) setTimeout(answer, Number(delay));
    else answer();
  });
  res.on('error', () => {});
}).listen(8080);
