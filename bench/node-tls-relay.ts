// The cheapest data path a Node process can be (not a test): a mutual TLS 1.3 relay, one
// connection in, one out, joined with pipe() both ways, no HTTP/2, no policy, no metrics. The
// bench runs a pair of them beside stunnel (bench/references.ts NodeTlsRelay) so that the same run
// shows what TLS alone costs per byte and in memory in Node, on the pinned runtime, against
// ztunnel: the floor under anything the agent can do while its bytes go through Node's streams.
//
//   node bench/node-tls-relay.ts client|server --listen IP:PORT --connect IP:PORT --dir DIR
//
// DIR holds <role>.key, <role>.crt and <role>.ca, as written for stunnel. The client listens in
// plaintext and connects with TLS; the server listens with TLS and connects in plaintext. Same
// suite and curve as stunnel's (and HBONE's): TLS_AES_128_GCM_SHA256, P-256 certificates.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { listen: { type: 'string' }, connect: { type: 'string' }, dir: { type: 'string' } },
});
const role = positionals[0];
if ((role !== 'client' && role !== 'server') || !values.listen || !values.connect || !values.dir) {
  console.error('usage: node-tls-relay.ts client|server --listen IP:PORT --connect IP:PORT --dir DIR');
  process.exit(2);
}
const hostPort = (s: string): { host: string; port: number } => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};
const listen = hostPort(values.listen);
const target = hostPort(values.connect);
const file = (ext: string): Buffer => readFileSync(join(values.dir as string, `${role}.${ext}`));
const credentials = { key: file('key'), cert: file('crt'), ca: file('ca'), minVersion: 'TLSv1.3' as const, ciphersuites: 'TLS_AES_128_GCM_SHA256' };

/** Either side's failure ends both, as a relay must; errors are the peer's business, not a crash. */
function join2(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  const end = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end);
  b.on('error', end);
}

const server =
  role === 'client'
    ? net.createServer({ noDelay: true }, (inner) => {
        const outer = tls.connect({ ...credentials, host: target.host, port: target.port, servername: 'bench', checkServerIdentity: () => undefined });
        outer.setNoDelay(true);
        join2(inner, outer);
      })
    : tls.createServer({ ...credentials, requestCert: true, rejectUnauthorized: true }, (outer) => {
        outer.setNoDelay(true);
        const inner = net.connect({ host: target.host, port: target.port, noDelay: true });
        join2(outer, inner);
      });
server.on('error', (err: Error) => {
  console.error(`node-tls-relay ${role}: ${err.message}`);
  process.exit(1);
});
server.listen(listen.port, listen.host, () => console.log(`node-tls-relay ${role} ready on ${values.listen}`));
