// Test helper run inside a network namespace: answers each connection with the original
// destination that the kernel recorded before nftables redirected it.
import { createServer } from 'node:net';
import { originalDst } from '../../native/sockopt.ts';

const port = Number(process.argv[2]);
createServer((s) => {
  try {
    const d = originalDst(s);
    s.end(`${d.ip}:${d.port}\n`);
  } catch (e) {
    s.end(`error ${(e as Error).message}\n`);
  }
}).listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
