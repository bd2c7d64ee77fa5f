// Data-plane workers (workers.ts) with real threads, real sockets, real TLS and a real nftables
// redirect, in a network namespace of their own: two workers bind the same ports (SO_REUSEPORT),
// receive the node's state and certificates by replication, serve tunnels, apply a later delta,
// report metrics the main thread merges, and drain.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { buildNative } from '../scripts/build-native.ts';

const ns = `wkr-${randomBytes(3).toString('hex')}`;
const DIALLED = 9999;
const HBONE = 25008;
const sh = (...a: string[]) => execFileSync(a[0] as string, a.slice(1), { encoding: 'utf8' });

t.teardown(() => {
  try {
    sh('ip', 'netns', 'del', ns); // takes its nftables table with it
  } catch {
    /* never created */
  }
});

t.test('two workers share the ports, follow the replicated state, and report as one node', async (t) => {
  buildNative();
  sh('ip', 'netns', 'add', ns);
  sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
    input: `table ip wkr {\n  chain out {\n    type nat hook output priority -100;\n    tcp dport ${DIALLED} redirect to :${HBONE}\n  }\n}\n`,
  });
  const harness = new URL('./testdata/workers-harness.ts', import.meta.url).pathname;
  const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, harness, String(DIALLED), String(HBONE)], { encoding: 'utf8', timeout: 60_000 });
  const last = out.trim().split('\n').pop() ?? '';
  const r = JSON.parse(last) as { echoed: number; connections: number; perWorker: number[]; openedMetric: number; refusedAfterRemoval: number; drained: string; workers: number };
  t.equal(r.workers, 2, 'two workers');
  t.equal(r.echoed, 16, 'every tunnel reached the destination through a worker (state and certificate replicated)');
  t.equal(r.connections, 16, 'the admin view lists the open connections of both workers');
  // 16 connections on two workers: all on one has a chance of 2^-15 if the kernel spreads them.
  t.ok(r.perWorker.length === 2 && r.perWorker.every((n) => n > 0), `the kernel spread the connections over both workers (${r.perWorker.join(' + ')})`);
  t.equal(r.openedMetric, 16, 'the node metrics sum what the workers counted');
  t.equal(r.refusedAfterRemoval, 4, 'a delta reaches every worker: the removed workload is refused');
  t.equal(r.drained, 'drained', 'drain resolves once the workers have no connection left');
});
