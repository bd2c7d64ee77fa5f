// The routed-path tests' state: Service a/web (HTTP port 80) whose endpoints are 127.0.0.1 on the
// given ports, one HTTPRoute in namespace a sending everything to it, both in a real StateStore.
import type { Service } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { StateStore } from '../state/store.ts';

export function oneRouteState(endpointPorts: number[], routeName: string): { service: Service; route: CompiledRoute; store: StateStore } {
  const service: Service = {
    key: 'a/web',
    namespace: 'a',
    name: 'web',
    clusterIPs: ['10.96.0.10'],
    ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }],
    endpoints: endpointPorts.map((port) => ({ ip: '127.0.0.1', ports: { http: port }, ready: true })),
  };
  const route: CompiledRoute = {
    key: `HTTPRoute/a/${routeName}`,
    kind: 'HTTPRoute',
    namespace: 'a',
    name: routeName,
    generation: 1,
    created: '2026-01-01T00:00:00Z',
    parents: [{ service: 'a/web' }],
    rules: [{ name: '0', matches: [], filters: [], backends: [{ service: 'a/web', port: 80, weight: 1, filters: [] }] }],
  };
  const store = new StateStore();
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Service', value: service }, { kind: 'Route', value: route }] });
  return { service, route, store };
}
