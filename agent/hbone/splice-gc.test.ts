// splice.ts reads sockets into one shared landing buffer and sends the bytes on in recycled
// chunks; a chunk reused before nghttp2 has sent it would put one read's bytes in another's place.
// splice-gc-stress.ts runs 8 rounds of 4 tunnels at once, spliced on both sides, in a child with a
// 1 MB young generation (the chart's setting) that collects garbage every turn of its event loop,
// and compares every byte. Releasing chunks at write time instead of at the write callback made
// tunnels come back wrong here (first difference at byte 65,536), so the check can fail.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const child = fileURLToPath(new URL('./splice-gc-stress.ts', import.meta.url));

t.test('no byte through a spliced tunnel is lost, doubled or swapped while garbage is collected', async (t) => {
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, ['--max-semi-space-size=1', '--expose-gc', child], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WEFT_SPLICE_READ: '' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  const line = out.stdout.split('\n').find((l) => l.startsWith('{"tunnels"'));
  t.ok(line, `the stress child reported (exit ${out.code}): ${out.stderr.slice(-500)}`);
  const r = JSON.parse(line ?? '{}') as { tunnels: number; compared: number; wrong: number; first: string; splice: { recycled: number; data: number; chunks: number } };
  t.equal(r.compared, 8 * 4 * 2 * 1024 * 1024, 'every byte came back');
  t.equal(r.wrong, 0, `tunnels with wrong bytes: ${r.wrong}${r.first ? ` (${r.first})` : ''}`);
  // Both ends of each tunnel (the application's socket, the echo's) took the recycled path.
  t.equal(r.splice.recycled, 2 * r.tunnels, 'every splice read through the landing buffer');
  t.equal(r.splice.data, 0, 'none fell back to data events');
  t.ok(r.splice.chunks > 1000, `recycled chunks carried the bulk (${r.splice.chunks})`);
});
