// Opens N TCP connections to host:port and keeps them open (idle) for S seconds, then closes
// them: the load behind "agent memory per idle tunnelled connection".
import { connect, type Socket } from 'node:net';

const [host, port, n, seconds] = process.argv.slice(2);
const sockets: Socket[] = [];
let open = 0;
for (let i = 0; i < Number(n); i++) {
  const s = connect({ host: host as string, port: Number(port) }, () => open++);
  s.on('error', () => {});
  sockets.push(s);
  if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
}
setTimeout(() => {
  console.log(`${open} connections were open`);
  for (const s of sockets) s.destroy();
}, Number(seconds) * 1000);
