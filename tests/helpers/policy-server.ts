// A test workload for the policy suites, run inside a playground pod:
//   :8080  HTTP/1.1 — 200 for any method and path; the body echoes `METHOD path`, except
//          /bytes/<n>, which answers n bytes (a response long enough to be cut in the middle),
//          and /sleep/<ms>, which answers after that long (for route timeouts)
//   :8081  h2c — a gRPC-shaped endpoint: any POST answers one empty message and grpc-status 0
//   :9000  TCP echo
// Usage: node tests/helpers/policy-server.ts
import { createServer as createHttpServer } from 'node:http';
import { createServer as createH2Server } from 'node:http2';
import { createServer as createTcpServer } from 'node:net';

createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  req.on('end', () => {
    const size = /^\/bytes\/(\d{1,9})$/.exec(req.url ?? '')?.[1];
    const sleep = /^\/sleep\/(\d{1,5})$/.exec(req.url ?? '')?.[1];
    const answer = () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(size ? Buffer.alloc(Number(size), 120) : `${req.method} ${req.url}\n`);
    };
    if (sleep) setTimeout(answer, Number(sleep));
    else answer();
  });
  res.on('error', () => {});
}).listen(8080);

const h2 = createH2Server();
h2.on('stream', (stream, headers) => {
  stream.resume();
  stream.on('end', () => {
    if (String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    } else {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`${String(headers[':method'])} ${String(headers[':path'])}\n`);
    }
  });
});
h2.listen(8081);

createTcpServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.pipe(s);
}).listen(9000);
