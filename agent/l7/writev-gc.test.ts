// Regression test of writev-guard.ts: 16,000 small HTTP/1.1 responses through tunnel streams, in a
// child process with a 1 MB young generation (the chart runs agents with --max-semi-space-size=1),
// so scavenges run all the time and vectored writes into an Http2Stream meet them, which is what
// made the freed-memory bug show (--gc-interval, once passed here too, only works in V8 debug
// builds: Node's release build ran as many collections without it): with the guard's earlier form
// (strings turned into Buffers, still vectored), 156–222 bodies of 16,000 came back with their first
// 16 bytes replaced by heap pointers; without vectored writes, none in 72,000.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const child = fileURLToPath(new URL('./gc-stress.ts', import.meta.url));

t.test('no response body is corrupted by garbage collection under the HTTP/2 write path', async (t) => {
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, ['--max-semi-space-size=1', child], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const line = out.stdout.split('\n').find((l) => l.startsWith('{"requests"'));
  t.ok(line, `the stress child reported (exit ${out.code}): ${out.stderr.slice(-500)}`);
  const r = JSON.parse(line ?? '{}') as { requests: number; corrupt: number; first: string };
  t.equal(r.requests, 16_000);
  t.equal(r.corrupt, 0, `corrupt bodies: ${r.corrupt}${r.first ? ` (first: ${r.first})` : ''}`);
});
