// An old agent process keeps accepting while its successor starts: the wait that decides when it
// stops, with real agent sockets (handover.ts) on a temporary path.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { successorServing } from './drain.ts';
import { AgentSocket, type AgentStatus } from './handover.ts';

const status = (pid: number, notReady?: string) => (): AgentStatus => ({ pid, version: 'test', startedAt: new Date(0).toISOString(), draining: pid === 1, ...(notReady ? { notReady } : {}) });

t.test('waits while the successor is not ready, stops waiting once it is, and never past the limit', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-drain-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'agent.sock');
  const old = await AgentSocket.open(path, status(1));
  t.teardown(() => old.close());
  // One look at the socket path, no poll: a poll step is 100 ms (a loaded machine makes the look
  // itself take a few).
  const plain = await successorServing({ agentSocket: old }, 5000);
  t.ok(plain.successor === undefined && plain.ms < 100, `no successor (a plain stop): no wait (${JSON.stringify(plain)})`);

  let notReady: string | undefined = 'no certificate yet';
  const successor = await AgentSocket.open(path, () => status(2, notReady)());
  t.teardown(() => successor.close());
  const limited = await successorServing({ agentSocket: old }, 300);
  t.ok(limited.ms >= 300 && limited.ms < 2000, `a successor that never gets ready is waited for only up to the limit (${limited.ms} ms)`);
  t.match(limited.successor, /pid 2 still not ready: no certificate yet/);

  setTimeout(() => (notReady = undefined), 400);
  const waited = await successorServing({ agentSocket: old }, 10_000);
  t.ok(waited.ms >= 350 && waited.ms < 3000, `the wait ends once the successor is ready (${waited.ms} ms)`);
  t.equal(waited.successor, 'pid 2 ready');
});
