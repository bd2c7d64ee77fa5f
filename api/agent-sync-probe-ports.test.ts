// Where sync messages enter the agent (parseSyncMessage): the probe ports of a workload are checked there, because the
// agent turns them into nftables elements that open a pod to its node.
import t from 'tap';
import { parseSyncMessage, type Workload } from './agent-sync.ts';

const workload = (extra: Record<string, unknown>): Workload =>
  ({ key: 'shop/api', uid: 'u', namespace: 'shop', name: 'api', node: 'n1', ips: ['10.1.0.2'], serviceAccount: 'api', identity: 'spiffe://cluster.local/ns/shop/sa/api', meshed: true, labels: {}, namedPorts: {}, ...extra });
const snapshot = (w: Workload) => JSON.stringify({ type: 'snapshot', epoch: 'e', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' }, resources: [{ kind: 'Workload', value: w }] });

t.test('probePorts: optional, and TCP ports only', async (t) => {
  const parsed = parseSyncMessage(snapshot(workload({ probePorts: [8080, 9090] })));
  t.same(parsed.type === 'snapshot' && parsed.resources[0]?.value, workload({ probePorts: [8080, 9090] }));
  t.doesNotThrow(() => parseSyncMessage(snapshot(workload({}))), 'absent: a controller from before probe ports');
  for (const bad of [[0], [65536], ['8080'], [1.5], 'http']) {
    t.throws(() => parseSyncMessage(snapshot(workload({ probePorts: bad }))), { code: 'PROTOCOL_ERROR', message: /probePorts/ }, JSON.stringify(bad));
  }
});
