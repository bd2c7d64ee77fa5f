// A backend for the routing suite, run inside a playground pod: HTTP/1.1 on :8080 that says who
// answered (`x-pod` and the body) and what it received, so a test can see where a route sent a
// request and what the filters did to it.
//   node tests/helpers/route-server.ts <name> [status]
//   any path      → <status> (default 200), body: JSON {pod, method, path, headers}
//   /delay/<ms>   → the same, after <ms> milliseconds
//   /__seen       → JSON list of the last 5,000 other requests received (a mirror backend's copies:
//                   method, path, headers, body length and its first 1 KiB), not itself recorded
//   node tests/helpers/route-server.ts <name> <status> <delay-ms>: every answer after <delay-ms>
//   --h2c=<port>  also HTTP/2 with prior knowledge (h2c, what gRPC clients speak) on <port>: every
//                 stream is recorded in /__seen like a request and answered <status>; 200 to a
//                 gRPC call is grpc-status 0 with one empty message, any other status is that HTTP
//                 status alone (headers only, no gRPC status), which a gRPC client reads as the
//                 call's failure (503: UNAVAILABLE) — a gRPC backend behind something that sheds
//                 load. No body: grpc-go 1.82 takes a non-gRPC body whose stream ends with an empty
//                 DATA frame (as Node ends one) for INTERNAL "closed without trailers" instead.
//   --grpc-status=<code>  with --h2c: every stream is answered trailers-only with that gRPC status
//                 (HTTP 200, the status in the only HEADERS frame), as a gRPC server fails a call
//                 before any answer (14: UNAVAILABLE).
import { createServer } from 'node:http';
import { createServer as createH2Server } from 'node:http2';

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const name = args[0] ?? 'unnamed';
const status = Number(args[1] ?? '200');
const everyDelay = Number(args[2] ?? '0');
const h2cPort = flags.map((f) => /^--h2c=(\d+)$/.exec(f)?.[1]).find((p) => p !== undefined);
const grpcStatus = flags.map((f) => /^--grpc-status=(\d+)$/.exec(f)?.[1]).find((p) => p !== undefined);
const seen: { method?: string; path?: string; headers: object; bodyLength: number; body: string }[] = [];

function record(r: (typeof seen)[number]): void {
  seen.push(r);
  if (seen.length > 5000) seen.shift();
}

createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/__seen') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(seen));
    }
    const body = Buffer.concat(chunks);
    record({ method: req.method, path: req.url, headers: req.headers, bodyLength: body.length, body: body.subarray(0, 1024).toString() });
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

if (h2cPort !== undefined) {
  const h2 = createH2Server();
  h2.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      record({ method: String(headers[':method']), path: String(headers[':path']), headers, bodyLength: body.length, body: body.subarray(0, 1024).toString() });
      if (grpcStatus !== undefined) {
        // Trailers-only: the call failed before any answer, its status in the only HEADERS frame.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': grpcStatus, 'x-pod': name }, { endStream: true });
      } else if (status === 200 && String(headers['content-type'] ?? '').startsWith('application/grpc')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-pod': name }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      } else {
        stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-pod': name }, { endStream: true });
      }
    });
  });
  h2.listen(Number(h2cPort));
}
