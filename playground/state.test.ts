// claimSlot: playgrounds started at the same moment get different slots (they own addresses and
// ports by slot), and a lock left by a dead process does not block forever.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const STATE = new URL('./state.ts', import.meta.url).pathname;
const CONFIG = new URL('./config.ts', import.meta.url).pathname;

/** Claims a slot for `name` in a separate process, as `weft dev up` does, and prints it. */
function claimInChild(root: string, name: string): Promise<number> {
  const script = `
    const { claimSlot, writeState } = await import(${JSON.stringify(STATE)});
    const { planPlayground } = await import(${JSON.stringify(CONFIG)});
    const slot = await claimSlot(${JSON.stringify(name)}, async (slot) => {
      // Widen the window between choosing and recording, where the old code raced.
      await new Promise((r) => setTimeout(r, 30));
      const plan = planPlayground(${JSON.stringify(name)}, slot, 1);
      await writeState({ name: plan.name, slot, phase: 'starting', supervisorPid: process.pid, startedAt: '', pids: {}, plan, repo: '' });
    });
    process.stdout.write(String(slot));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, WEFT_PLAYGROUND_ROOT: root } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`claim for ${name} failed: ${err}`))));
  });
}

t.test('concurrent claims get distinct slots', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'weft-slots-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  const slots = await Promise.all(names.map((n) => claimInChild(root, n)));
  t.equal(new Set(slots).size, names.length, `slots ${slots.join(',')} are distinct`);
  t.same([...slots].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5], 'the lowest free slots are used');
});

t.test('a stale lock is taken over', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'weft-slots-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const lock = join(root, '.slot.lock');
  await writeFile(lock, '999999');
  const old = new Date(Date.now() - 60_000);
  await utimes(lock, old, old);
  t.equal(await claimInChild(root, 'late'), 0);
});
