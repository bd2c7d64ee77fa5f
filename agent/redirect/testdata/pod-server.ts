// Test helper run inside a network namespace: a stand-in for a pod's application. Listens on each
// port given, IPv4 and IPv6, and answers every connection with `pod:<port>`, so that a test can
// tell a connection that reached the pod from one the agent's rules redirected.
import { createServer } from 'node:net';

const ports = process.argv.slice(2).map(Number);
let bound = 0;
for (const port of ports) {
  createServer((s) => {
    s.on('error', () => {});
    s.end(`pod:${port}\n`);
  }).listen({ port, host: '::', ipv6Only: false }, () => {
    if (++bound === ports.length) process.stdout.write('listening\n');
  });
}
