// The scale bench's harness at 20 simulated nodes, so that bench/scale.ts cannot rot: a real
// controller on the playground's API server, real node-bound tokens, simulated agents in a
// process of their own. Besides running, it checks what per-node state promises: a policy for a
// few nodes reaches those and sends the other agents nothing, and after a controller restart every
// agent is synced with the new process by content, without a snapshot; and after a leader change
// (the serving replica killed, agents moved to the other) every agent holds exactly the policies
// its node needs, again without a snapshot. The agents list `gzip`: their first snapshot comes
// compressed.
import t from 'tap';
import { uniqueName } from './helpers/playground.ts';
import { runScale } from '../bench/scale-harness.ts';

// A playground up and down is most of it: 140 s at load 17, 235 s at load 20 (runner default 300 s).
t.setTimeout(600_000);

t.test('20 simulated nodes: programmed, scoped, and resynced after a restart', async (t) => {
  const r = await runScale({ name: uniqueName('scl'), nodes: 20, pods: 200, agentProcs: 1, rounds: 2, storm: true, failover: true, log: (l) => t.comment(l) });
  t.comment(JSON.stringify(r));
  t.equal(r.broad.n, 2 * 20, 'the namespace-wide policy reached all 20 agents in both rounds');
  t.ok(r.broad.p99 < 5_000, `and within 5 s (p99 ${r.broad.p99} ms)`);
  t.ok(r.narrowCost.selected >= 1 && r.narrowCost.selected < 20, `the narrow policy was for ${r.narrowCost.selected} nodes`);
  t.equal(r.narrowCost.othersWithMessages, 0, 'the other agents were sent nothing for it');
  t.equal(r.broadCost.selectedMessages, 1, 'a change is one message per selected agent');
  t.equal(r.podCost.agentsWithMessage, 20, 'a new pod reaches every agent');
  // ~300 bytes a pod plain; the agents list `gzip`, so their first snapshot came compressed.
  t.ok(r.snapshotBytes > 0 && r.snapshotBytes < 100 * 200, `the first snapshot was compressed (${r.snapshotBytes} bytes for 200 pods)`);
  t.ok(r.storm && r.storm.allSyncedSeconds < 60, `every agent synced with the restarted controller (${r.storm?.allSyncedSeconds} s)`);
  t.equal(r.storm?.messages.snapshot, 0, `none of them by a snapshot (${JSON.stringify(r.storm?.messages)}, ${r.storm?.bytes} bytes)`);
  t.ok(r.failover?.epochsDiffer, 'the replicas number revisions in epochs of their own');
  t.equal(r.failover?.agentsCorrect, 20, 'every agent resumed on the standby holding exactly the policies its node needs');
  t.equal(r.failover?.messages.snapshot, 0, `by content, not by a snapshot (${JSON.stringify(r.failover?.messages)})`);
  t.equal(r.failover?.changeAfter.n, 20, 'and a change through the standby reached every agent');
  t.ok((r.apiServer.controllerStart['LIST pods'] ?? 0) >= 1, 'the controller listed pods from the API server');
});
