// When a stopping agent takes Weft off its node: only when no successor has the node and the
// DaemonSet was positively seen deleted or being deleted. Every other combination keeps it.
import t from 'tap';
import type { DaemonSetState } from './daemonset-watch.ts';
import { decideAfterSuccessor, decideOnStop } from './stop-decision.ts';

const ds = (state: DaemonSetState, lastError?: string) => ({ namespace: 'weft-system', name: 'weft-agent', state, ...(lastError ? { lastError } : {}) });

t.test('uninstalls only without a successor and with the DaemonSet deleted or being deleted', async (t) => {
  const states: DaemonSetState[] = ['present', 'deleting', 'deleted', 'unknown'];
  for (const state of states) {
    const alone = decideOnStop({ successor: undefined, daemonSet: ds(state) });
    t.equal(alone.uninstall, state === 'deleted' || state === 'deleting', `no successor, DaemonSet ${state}: ${alone.reason}`);
    const upgrade = decideOnStop({ successor: { pid: 4242 }, daemonSet: ds(state) });
    t.equal(upgrade.uninstall, false, `successor, DaemonSet ${state}: keeps (${upgrade.reason})`);
    t.match(upgrade.reason, /4242/);
  }
  t.equal(decideOnStop({ successor: undefined, daemonSet: null }).uninstall, false, 'no WEFT_DAEMONSET: never');
  const forbidden = decideOnStop({ successor: undefined, daemonSet: ds('unknown', 'KUBE_HTTP: watch DaemonSet weft-system/weft-agent: HTTP 403') });
  t.equal(forbidden.uninstall, false);
  t.match(forbidden.reason, /HTTP 403/, 'the reason says why the state is unknown');
});

t.test('with a successor and the DaemonSet going (helm uninstall mid-roll), exactly one of the two takes Weft off', async (t) => {
  for (const state of ['present', 'unknown'] as const) {
    t.notOk(decideOnStop({ successor: { pid: 4242 }, daemonSet: ds(state) }).awaitSuccessor, `DaemonSet ${state}: an upgrade, nothing to wait for`);
  }
  for (const state of ['deleting', 'deleted'] as const) {
    const own = decideOnStop({ successor: { pid: 4242 }, daemonSet: ds(state) });
    t.ok(own.awaitSuccessor, `DaemonSet ${state}: waits for the successor (${own.reason})`);
    const successorLeaves = decideOnStop({ successor: undefined, daemonSet: ds('unknown', 'HTTP 403') });
    t.equal(decideAfterSuccessor(own, { pid: 4242, decided: successorLeaves }).uninstall, true, 'the successor leaves it meshed: this process takes Weft off');
    const successorTakes = decideOnStop({ successor: undefined, daemonSet: ds(state) });
    t.equal(decideAfterSuccessor(own, { pid: 4242, decided: successorTakes }).uninstall, false, 'the successor takes Weft off: this process does not');
    t.equal(decideAfterSuccessor(own, { pid: 4242, gone: true }).uninstall, true, 'the successor went without deciding: this process takes Weft off');
    t.equal(decideAfterSuccessor(own, { pid: 4242, undecided: 'draining' }).uninstall, false, 'still undecided at the end of the wait: kept (fail closed)');
  }
  const upgrade = decideOnStop({ successor: { pid: 4242 }, daemonSet: ds('present') });
  t.same(decideAfterSuccessor(upgrade, { pid: 4242, gone: true }), upgrade, 'an upgrade decision is never changed by what the successor does');
});
