// A backend for the routing suite, run inside a playground pod: HTTP/1.1 on :8080 that says who
// answered (`x-pod` and the body) and what it received, so a test can see where a route sent a
// request and what the filters did to it.
//   node tests/helpers/route-server.ts <name> [status]
//   any path      → <status> (default 200), body: JSON {pod, method, path, headers}
//   /delay/<ms>   → the same, after <ms> milliseconds
import { createServer } from 'node:http';

const name = process.argv[2] ?? 'unnamed';
const status = Number(process.argv[3] ?? '200');

createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  req.on('end', () => {
    const delay = /^\/delay\/(\d{1,6})/.exec(req.url ?? '')?.[1];
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
