// Test helper run inside the node's network namespace: connects as the agent connects to a pod
// (redirect/uncaptured.ts) and prints what the other side answered.
import { connectUncaptured } from '../uncaptured.ts';

const [ip, port] = [process.argv[2] as string, Number(process.argv[3])];
const s = connectUncaptured({ ip, port });
let got = '';
s.on('data', (d: Buffer) => (got += d.toString()));
s.on('end', () => {
  process.stdout.write(got);
  s.end();
});
s.on('error', (e) => {
  process.stdout.write(`failed: ${e.message}\n`);
  process.exitCode = 1;
});
