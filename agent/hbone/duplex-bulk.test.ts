// Bulk traffic both ways through one pooled HBONE connection must not stall. Node's HTTP/2 session
// stops reading its socket while a write of its own is in progress, so when both ends have more in
// flight than the kernel buffers between them hold, each waits for the other to read, forever;
// the session window (settings.ts) is what bounds that. With 16 MiB windows each load below
// stalled on every run; with 4 MiB none did. The child (splice-gc-stress.ts, without its garbage
// collection) echoes every tunnel's bytes back through an HBONE server and compares them.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const child = fileURLToPath(new URL('./splice-gc-stress.ts', import.meta.url));
/** Far above what these take when nothing stalls (about 1-2 s each). */
const STALLED_MS = 30_000;

function run(tunnels: number, bytes: number): Promise<{ line?: string; code: number | null; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [child], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SPLICE_GC_ROUNDS: '1', SPLICE_GC_TUNNELS: String(tunnels), SPLICE_GC_BYTES: String(bytes) },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), STALLED_MS);
    p.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('{"tunnels"'));
      resolve({ ...(line ? { line } : {}), code, stderr, ms: performance.now() - started });
    });
  });
}

for (const [tunnels, bytes] of [
  [5, 3_000_000],
  [6, 4_000_000],
  [5, 10_000_000],
] as const) {
  t.test(`${tunnels} tunnels of ${bytes / 1e6} MB echoed at once through one connection complete`, async (t) => {
    const r = await run(tunnels, bytes);
    t.ok(r.line, r.line ? `done in ${(r.ms / 1000).toFixed(1)} s` : `stalled: killed after ${STALLED_MS / 1000} s (exit ${r.code}) ${r.stderr.slice(-300)}`);
    const out = JSON.parse(r.line ?? '{}') as { compared?: number; wrong?: number; first?: string };
    t.equal(out.compared, tunnels * bytes, 'every byte came back');
    t.equal(out.wrong, 0, `tunnels with wrong bytes: ${out.wrong}${out.first ? ` (${out.first})` : ''}`);
  });
}
