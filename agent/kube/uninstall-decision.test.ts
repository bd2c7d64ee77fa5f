// When a stopping agent takes Weft off its node: only when no successor has the node and the
// DaemonSet was positively seen deleted or being deleted. Every other combination keeps it.
import t from 'tap';
import type { DaemonSetState } from './daemonset-watch.ts';
import { decideOnStop } from './stop-decision.ts';

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
