// The route controller's share of the replicas' programmed reports: which of this replica's agents
// hold each route in force, and the policy status writer publishing it beside the policies.
import t from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import type { CompiledRoute } from '../../api/route.ts';
import { createLogger } from '../../api/log.ts';
import type { LeaderElector } from '../kube/leader.ts';
import type { PolicyReconciler, PolicySources } from '../policy/reconciler.ts';
import { PolicyStatusWriter } from '../policy/status-writer.ts';
import { AgentRegistry } from '../server/agent-registry.ts';
import { testWorkload } from '../server/test-server.ts';
import { RevisionedStore } from '../state/store.ts';
import { RouteController } from './controller.ts';

function kubeConfig(): KubeConfig {
  // Never called: nothing is started. The clients are made in the constructors.
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
  return kc;
}

const route = (generation: number): CompiledRoute => ({ key: 'HTTPRoute/shop/r', kind: 'HTTPRoute', namespace: 'shop', name: 'r', generation, created: '', parents: [{ service: 'shop/web' }], rules: [] });

t.test('localReport lists each route with the connected nodes whose agents acknowledged it; the policy report carries it', async (t) => {
  const store = new RevisionedStore({ config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' } });
  t.teardown(() => store.close());
  const registry = new AgentRegistry();
  const leader = { isLeader: () => true, onChange: () => {} } as unknown as LeaderElector;
  const log = createLogger({}, { level: 'error' });
  const routes = new RouteController({ kubeConfig: kubeConfig(), store, leader, log, registry });
  store.upsert(testWorkload('a-1', 'node-1'));
  store.upsert(testWorkload('a-2', 'node-2'));
  store.upsert({ kind: 'Route', value: route(3) });
  store.flush();
  const revision = store.revision;
  registry.connect('node-1', { agentVersion: 't', peer: 'p' }).acked(store.epoch, revision);
  registry.connect('node-2', { agentVersion: 't', peer: 'p' }).acked(store.epoch, revision - 1);
  const report = routes.localReport();
  const connected = registry.connectedNodes();
  t.same(report['Route/HTTPRoute/shop/r']?.generation, 3);
  t.same(report['Route/HTTPRoute/shop/r']?.nodes.map((i) => connected[i]), ['node-1'], 'node-2 acknowledged an older revision only');

  const writer = new PolicyStatusWriter({
    kubeConfig: kubeConfig(),
    sources: { accessPolicies: { list: () => [] }, meshTLSPolicies: { list: () => [] } } as unknown as PolicySources,
    store,
    registry,
    reconciler: { verdict: () => undefined, onChange: () => () => {} } as unknown as PolicyReconciler,
    leader,
    installNamespace: 'weft-system',
    identity: 'test',
    log,
    programmedReports: false,
    extraReport: () => routes.localReport(),
  });
  t.same(writer.localReport().policies, report, 'the replica publishes the routes with its policies');
});
