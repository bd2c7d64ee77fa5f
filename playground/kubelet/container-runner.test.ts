// The container runner with real processes: exit codes, the restart policies, the crash-loop
// back-off (with shortened timings), process-group kill and SIGKILL escalation, running inside a
// network namespace, and adopting a process a previous kubelet started.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RestartBackoff } from './backoff.ts';
import { ContainerRunner, type ContainerRunnerOptions, type RestartPolicy } from './container-runner.ts';
import { createNetns, deleteNetns, netnsPath } from './netns.ts';
import type { ProcessRecord } from './pod-state-store.ts';
import { DEFAULT_PATH, readStartTicks } from './process.ts';

const FAST = { initialMs: 300, maxMs: 1200, resetAfterMs: 60_000 };

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wkt-run-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function runner(
  t: Test,
  dir: string,
  argv: string[],
  restartPolicy: RestartPolicy,
  extra: Partial<ContainerRunnerOptions> = {},
): { r: ContainerRunner; starts: ProcessRecord[] } {
  const starts: ProcessRecord[] = [];
  const r = new ContainerRunner({
    name: 'app',
    podLabel: 'web_default(uid)',
    restartPolicy,
    launch: { argv, env: { PATH: DEFAULT_PATH }, netnsPath: null },
    logPath: (n) => join(dir, 'logs', `${n}.log`),
    backoff: FAST,
    onChange: () => {},
    onStarted: (rec) => starts.push(rec),
    ...extra,
  });
  // Stop first, then remove the directory again: a restart racing the first removal recreates logs.
  t.teardown(async () => {
    await r.stop(0);
    await rm(dir, { recursive: true, force: true });
  });
  return { r, starts };
}

function alive(pid: number): boolean {
  return readStartTicks(pid) !== undefined;
}

t.test('exit codes and reasons are reported as a runtime reports them', async (t) => {
  const dir = await tempDir(t);
  const cases: [string[], number, string][] = [
    [['true'], 0, 'Completed'],
    [['sh', '-c', 'exit 3'], 3, 'Error'],
    [['sh', '-c', 'kill -KILL $$'], 137, 'Error'],
  ];
  for (const [argv, exitCode, reason] of cases) {
    const { r } = runner(t, dir, argv, 'Never');
    r.start();
    await until(`${argv.join(' ')} to finish`, () => r.snapshot().finished);
    const s = r.snapshot();
    t.match(s.state, { kind: 'terminated', exitCode, reason }, argv.join(' '));
    t.equal(s.restartCount, 0, 'Never: no restart');
  }
});

t.test('a missing executable is a StartError with exit code 128', async (t) => {
  const dir = await tempDir(t);
  const { r } = runner(t, dir, ['wkt-no-such-program'], 'Never');
  r.start();
  await until('the failure', () => r.snapshot().finished);
  t.match(r.snapshot().state, {
    kind: 'terminated',
    exitCode: 128,
    reason: 'StartError',
    message: 'exec: "wkt-no-such-program": executable file not found in $PATH',
  });
});

t.test('Always restarts with the crash-loop back-off: immediately, then doubling to the cap', async (t) => {
  const dir = await tempDir(t);
  const changes: string[] = [];
  const { r, starts } = runner(t, dir, ['sh', '-c', 'exit 1'], 'Always', {
    backoff: { initialMs: 500, maxMs: 2000, resetAfterMs: 60_000 },
    onChange: () => changes.push(r.snapshot().state.kind === 'waiting' ? ((r.snapshot().state as { reason: string }).reason) : r.snapshot().state.kind),
  });
  r.start();
  await until('six starts', () => starts.length >= 6, 20_000);
  await r.stop(0);
  const at = starts.map((s) => Date.parse(s.startedAt));
  const gaps = at.slice(1).map((v, i) => v - (at[i] as number));
  // Each gap is the run time (a few ms) plus the back-off: 0, 500, 1000, 2000 (capped), 2000. The
  // slack stays under the smallest step, so a wrong back-off cannot pass for the right one.
  const expected = [0, 500, 1000, 2000, 2000];
  gaps.forEach((g, i) => {
    const e = expected[i] as number;
    t.ok(g >= e && g < e + 450, `restart ${i + 1} after ${g} ms (back-off ${e} ms)`);
  });
  t.ok(changes.includes('CrashLoopBackOff'), 'waits in CrashLoopBackOff between restarts');
  t.same(
    starts.map((s) => s.restartCount),
    [0, 1, 2, 3, 4, 5],
    'restartCount counts every restart',
  );
  t.match(r.snapshot().lastState, { exitCode: 1, reason: 'Error' }, 'lastState is the previous run');
});

t.test('OnFailure restarts a failed container until it succeeds, then stops', async (t) => {
  const dir = await tempDir(t);
  const marker = join(dir, 'ran-once');
  const { r } = runner(t, dir, ['sh', '-c', `if [ -e ${marker} ]; then exit 0; fi; touch ${marker}; exit 2`], 'OnFailure');
  r.start();
  await until('success', () => r.snapshot().finished);
  const s = r.snapshot();
  t.equal(s.restartCount, 1);
  t.match(s.state, { kind: 'terminated', exitCode: 0, reason: 'Completed' });
  t.match(s.lastState, { exitCode: 2, reason: 'Error' });
});

t.test('stop() terminates the whole process group', async (t) => {
  const dir = await tempDir(t);
  const pids = join(dir, 'pids');
  const { r, starts } = runner(t, dir, ['sh', '-c', `sleep 1000 & echo $! >> ${pids}; sleep 1000 & echo $! >> ${pids}; wait`], 'Always');
  r.start();
  await until('both children', () => existsSync(pids) && readFileSync(pids, 'utf8').trim().split('\n').length === 2);
  const children = (await readFile(pids, 'utf8')).trim().split('\n').map(Number);
  t.equal(children.length, 2);
  t.ok(children.every(alive), 'the background children run');

  await r.stop(2000);
  t.match(r.snapshot().state, { kind: 'terminated', exitCode: 143 }, 'the shell died of SIGTERM');
  t.ok(r.snapshot().finished, 'no restart after stop, even with Always');
  await until('the children to be gone', () => !children.some(alive), 2000);
  t.notOk(alive(starts[0]?.pid as number), 'the leader is gone');
});

t.test('a process that ignores SIGTERM is killed after the grace period', async (t) => {
  const dir = await tempDir(t);
  const { r } = runner(t, dir, ['sh', '-c', 'trap "" TERM; while :; do sleep 0.05; done'], 'Never');
  r.start();
  await until('running', () => r.snapshot().state.kind === 'running');
  await new Promise((res) => setTimeout(res, 100));
  const t0 = Date.now();
  await r.stop(600);
  const took = Date.now() - t0;
  t.ok(took >= 600 && took < 2000, `SIGKILL came after the grace period (${took} ms)`);
  t.match(r.snapshot().state, { kind: 'terminated', exitCode: 137 });
});

t.test("when the container's main process exits, what it left running goes too", async (t) => {
  const dir = await tempDir(t);
  const pidFile = join(dir, 'bg');
  const { r } = runner(t, dir, ['sh', '-c', `sleep 1000 & echo $! > ${pidFile}; sleep 0.2; exit 0`], 'Never');
  r.start();
  await until('exit', () => r.snapshot().finished);
  const bg = Number((await readFile(pidFile, 'utf8')).trim());
  await until('the background sleep to be gone', () => !alive(bg), 2000);
  t.pass('background process killed with its group');
});

t.test('kill() (a failed liveness probe) restarts per policy', async (t) => {
  const dir = await tempDir(t);
  const { r, starts } = runner(t, dir, ['sleep', '1000'], 'Always');
  r.start();
  await until('running', () => r.snapshot().state.kind === 'running');
  await r.kill(1000);
  await until('running again', () => starts.length === 2 && r.snapshot().state.kind === 'running');
  t.equal(r.snapshot().restartCount, 1);
  t.match(r.snapshot().lastState, { exitCode: 143, reason: 'Error' });
  t.equal(r.snapshot().generation, 2, 'a new process, so probes start over');
});

t.test('runs inside the pod network namespace with its env, working dir and log file', async (t) => {
  const dir = await tempDir(t);
  const ns = `wkt-run-${randomBytes(4).toString('hex')}`;
  t.teardown(() => deleteNetns(ns).catch(() => {}));
  await createNetns(ns);
  const { r } = runner(t, dir, ['sh', '-c', 'readlink /proc/self/ns/net; echo "$GREETING"; pwd; echo oops >&2'], 'Never', {
    launch: {
      argv: ['sh', '-c', 'readlink /proc/self/ns/net; echo "$GREETING"; pwd; echo oops >&2'],
      env: { PATH: DEFAULT_PATH, GREETING: 'hello from the pod' },
      cwd: dir,
      netnsPath: netnsPath(ns),
    },
  });
  r.start();
  await until('exit', () => r.snapshot().finished);
  const [netLink, greeting, cwd, stderr] = (await readFile(join(dir, 'logs', '0.log'), 'utf8')).trim().split('\n');
  const inode = (await stat(netnsPath(ns))).ino;
  t.equal(netLink, `net:[${inode}]`, "the process ran in the pod's network namespace");
  t.equal(greeting, 'hello from the pod', 'env reaches the process');
  t.equal(cwd, dir, 'workingDir is honoured');
  t.equal(stderr, 'oops', 'stderr goes to the same log');
  t.match(r.snapshot().state, { kind: 'terminated', exitCode: 0 });
});

t.test('the current and previous logs are kept, older ones removed', async (t) => {
  const dir = await tempDir(t);
  const { r, starts } = runner(t, dir, ['sh', '-c', 'echo run'], 'Always', { backoff: { initialMs: 50, maxMs: 50, resetAfterMs: 60_000 } });
  r.start();
  await until('four runs', () => starts.length >= 4);
  await r.stop(0);
  const logs = (await readdir(join(dir, 'logs'))).sort();
  const n = starts.length - 1;
  t.same(logs, [`${n - 1}.log`, `${n}.log`].sort());
});

t.test('a restarted kubelet adopts the running process instead of starting another', async (t) => {
  const dir = await tempDir(t);
  const first = runner(t, dir, ['sleep', '1000'], 'Always');
  first.r.start();
  await until('running', () => first.starts.length === 1);
  const rec = first.starts[0] as ProcessRecord;

  const second = runner(t, dir, ['sleep', '1000'], 'Always', { adopt: rec, initialRestartCount: 0 });
  second.r.start();
  const s = second.r.snapshot();
  t.match(s.state, { kind: 'running', containerID: rec.containerID }, 'same container, still running');
  t.equal(second.starts.length, 0, 'nothing new was started');

  await second.r.stop(1000);
  await until('adopted process gone', () => !alive(rec.pid), 3000);
  t.match(second.r.snapshot().state, { kind: 'terminated', reason: 'Unknown' }, 'exit status of a process we did not start is unknown');

  // A record whose process is gone (or whose PID was reused) is not adopted: a new process starts.
  const third = runner(t, dir, ['sleep', '1000'], 'Always', { adopt: rec });
  third.r.start();
  await until('a new process', () => third.starts.length === 1);
  t.not(third.starts[0]?.pid, rec.pid);
});

t.test('a container that ended before the kubelet restarted is not run again unless its policy says so', async (t) => {
  const dir = await tempDir(t);
  const ended = { exitCode: 0, reason: 'Completed', startedAt: new Date(Date.now() - 5000), finishedAt: new Date(Date.now() - 4000), containerID: 'weft://old' };
  const never = runner(t, dir, ['true'], 'OnFailure', { previousExit: ended, initialRestartCount: 2 });
  never.r.start();
  t.match(never.r.snapshot(), { finished: true, restartCount: 2, state: { kind: 'terminated', exitCode: 0, containerID: 'weft://old' } });
  t.equal(never.starts.length, 0, 'a completed container is not started again');

  const always = runner(t, dir, ['sleep', '1000'], 'Always', { previousExit: { ...ended, exitCode: 255, reason: 'Unknown' }, initialRestartCount: 2 });
  always.r.start();
  await until('restarted', () => always.starts.length === 1);
  t.match(always.r.snapshot(), { restartCount: 3, lastState: { exitCode: 255, reason: 'Unknown' }, state: { kind: 'running' } });
});

t.test('the crash-loop back-off forgets a container that ran long enough', async (t) => {
  const b = new RestartBackoff({ initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 });
  t.equal(b.delay(1000, 1000), 0, 'first restart: immediately');
  b.recordRestart(1000);
  t.equal(b.delay(2000, 2000), 10_000, 'second: 10 s from the exit');
  t.equal(b.delay(2000, 7000), 5000, 'counted from the exit, not from now');
  b.recordRestart(2000);
  t.equal(b.currentMs(), 20_000, 'doubles');
  for (let i = 0; i < 10; i++) b.recordRestart(3000 + i);
  t.equal(b.currentMs(), 300_000, 'capped at 5 min');
  t.equal(b.delay(3000 + 9 + 600_001, 3000 + 9 + 600_001), 0, 'after 10 min without a failure: immediate again');
  b.recordRestart(3000 + 9 + 600_001);
  t.equal(b.currentMs(), 10_000, 'and the back-off starts over');
});
