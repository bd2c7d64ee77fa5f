// The status writer keeps each policy's selection from one store commit to the next (a fan-out's
// ACKs bring a pass a second, and filtering every workload per pass was most of its cost). What it
// computes must still follow the store: a new selected pod counts at once, an ACK moves
// "programmed" without a commit, and a changed selector selects anew.
import t from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import type { Resource } from '../../api/agent-sync.ts';
import type { AccessPolicy } from '../../api/policy/types.gen.ts';
import { createLogger } from '../../api/log.ts';
import { access } from '../../agent/policy/test-fixtures.ts';
import { AgentRegistry } from '../server/agent-registry.ts';
import { RevisionedStore } from '../state/store.ts';
import type { LeaderElector } from '../kube/leader.ts';
import type { PolicyReconciler, PolicySources, PolicyVerdict } from './reconciler.ts';
import { PolicyStatusWriter } from './status-writer.ts';
import { testWorkload } from '../server/test-server.ts';

const policy = (app: string): Resource => ({ kind: 'AccessPolicy', value: access('shop/p', 'ALLOW', [], { selector: { matchLabels: { app }, matchExpressions: [] } }) });

function kubeConfig(): KubeConfig {
  // Never called: desired() writes nothing. The clients are made in the constructor.
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
  return kc;
}

t.test('the kept selection follows the store', async (t) => {
  const store = new RevisionedStore({ config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' } });
  t.teardown(() => store.close());
  const registry = new AgentRegistry();
  const verdict: PolicyVerdict = { kind: 'AccessPolicy', key: 'shop/p', generation: 1, accepted: true, problems: [], warnings: [], inForceGeneration: 1 };
  const writer = new PolicyStatusWriter({
    kubeConfig: kubeConfig(),
    sources: {} as PolicySources,
    store,
    registry,
    reconciler: { verdict: () => verdict, onChange: () => () => {} } as unknown as PolicyReconciler,
    leader: { isLeader: () => true, onChange: () => {} } as unknown as LeaderElector,
    installNamespace: 'weft-system',
    identity: 'test',
    log: createLogger({}, { level: 'error' }),
    programmedReports: false,
  });
  const obj: AccessPolicy = { apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { namespace: 'shop', name: 'p', uid: 'u', generation: 1 }, spec: {} };

  store.upsert(testWorkload('a-1', 'node-1', 'a'));
  store.upsert(testWorkload('b-1', 'node-2', 'b'));
  store.upsert(policy('a'));
  store.flush();
  let s = writer.desired('AccessPolicy', obj);
  t.equal(s.selectedWorkloads, 1, 'one pod selected');
  t.equal(s.programmedNodes, '0/1', 'nowhere programmed yet');
  t.equal(writer.desired('AccessPolicy', obj).selectedWorkloads, 1, 'the same when asked again');

  store.upsert(testWorkload('a-2', 'node-2', 'a'));
  store.flush();
  s = writer.desired('AccessPolicy', obj);
  t.equal(s.selectedWorkloads, 2, 'a new selected pod counts after the commit');
  t.equal(s.nodes.total, 2, 'and its node');

  // ACKs move "programmed" without a commit.
  const revision = store.revision;
  for (const node of ['node-1', 'node-2']) registry.connect(node, { agentVersion: 't', peer: 'p' }).acked(store.epoch, revision);
  t.equal(writer.desired('AccessPolicy', obj).programmedNodes, '2/2', 'ACKs count with no commit in between');

  store.upsert(policy('b'));
  store.flush();
  s = writer.desired('AccessPolicy', obj);
  t.equal(s.selectedWorkloads, 1, 'a changed selector selects anew');
  t.equal(s.nodes.total, 1, 'on its own nodes');
});
