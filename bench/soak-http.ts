// The L7 half of the soak (bench/soak.ts), run inside a client pod's network namespace:
//   ip netns exec <pod-netns> node bench/soak-http.ts <ip:port> <requests-per-second>
// Sends a steady mix of HTTP/1.1 requests to the soak's server: on one keep-alive connection and
// on a fresh connection each, to a path the policy allows and to one it denies. A request whose
// answer is not the one the policy dictates (200 for /ok, 403 for /deny) counts as wrong; one
// that errors or times out counts as failed. `report` on stdin prints the counts as one JSON line.
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';

const [target = '', rateArg = '20'] = process.argv.slice(2);
const [host = '', portText = ''] = target.split(':');
const port = Number(portText);
const rate = Number(rateArg);
if (!host || !Number.isInteger(port) || !(rate > 0)) {
  process.stderr.write('usage: soak-http.ts <ip:port> <requests-per-second>\n');
  process.exit(2);
}

const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
const counts = { sent: 0, ok: 0, denied: 0, wrong: 0, failed: 0, failures: [] as string[] };

function fail(reason: string): void {
  counts.failed++;
  if (counts.failures.length < 20) counts.failures.push(`${new Date().toISOString()} ${reason}`);
}

function once(i: number): void {
  const path = i % 10 === 9 ? '/deny' : '/ok';
  const want = path === '/ok' ? 200 : 403;
  counts.sent++;
  const req = request({ host, port, path, agent: i % 2 === 0 ? keepAlive : false, timeout: 5000 }, (res) => {
    res.resume();
    res.on('end', () => {
      if (res.statusCode !== want) {
        counts.wrong++;
        if (counts.failures.length < 20) counts.failures.push(`${new Date().toISOString()} ${path}: ${res.statusCode}`);
      } else if (want === 200) counts.ok++;
      else counts.denied++;
    });
    res.on('error', (e) => fail(`${path}: ${e.message}`));
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => fail(`${path}: ${e.message}`));
  req.end();
}

let i = 0;
setInterval(() => once(i++), 1000 / rate);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'report') process.stdout.write(`${JSON.stringify({ type: 'report', ...counts })}\n`);
});
