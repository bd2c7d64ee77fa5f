// Which Service addresses the node's capture covers: those a meshed pod of this node backs.
import t from 'tap';
import type { Resource, Service, Workload } from '../../api/agent-sync.ts';
import { StateStore } from '../state/store.ts';
import { Redirector } from './nftables.ts';
import type { ServiceAddress } from './rules.ts';
import { localServiceAddresses, ServiceCapture } from './service-capture.ts';

const wl = (name: string, ip: string, node: string, meshed: boolean): Workload => ({
  key: `shop/${name}`,
  uid: name,
  namespace: 'shop',
  name,
  node,
  ips: [ip],
  serviceAccount: name,
  identity: `spiffe://cluster.local/ns/shop/sa/${name}`,
  meshed,
  labels: {},
  namedPorts: {},
});
const svc = (name: string, clusterIPs: string[], endpointIPs: string[]): Service => ({
  key: `shop/${name}`,
  namespace: 'shop',
  name,
  clusterIPs,
  ports: [
    { name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' },
    { name: 'dns', port: 53, protocol: 'UDP', appProtocol: 'udp' },
  ],
  endpoints: endpointIPs.map((ip) => ({ ip, ports: { http: 8080 }, ready: true })),
});

function store(...resources: Resource[]): StateStore {
  const s = new StateStore();
  s.apply({ type: 'snapshot', epoch: 'e', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' }, resources });
  return s;
}

const base: Resource[] = [
  { kind: 'Workload', value: wl('here', '10.1.0.2', 'n1', true) },
  { kind: 'Workload', value: wl('plain-here', '10.1.0.3', 'n1', false) },
  { kind: 'Workload', value: wl('there', '10.2.0.2', 'n2', true) },
];

t.test('only Services with a meshed endpoint on this node, their IPv4 ClusterIPs, TCP ports', async (t) => {
  const s = store(
    ...base,
    { kind: 'Service', value: svc('mixed', ['10.96.0.10', 'fd00::10'], ['10.2.0.2', '10.1.0.2']) },
    { kind: 'Service', value: svc('unmeshed-here', ['10.96.0.11'], ['10.1.0.3']) },
    { kind: 'Service', value: svc('elsewhere', ['10.96.0.12'], ['10.2.0.2']) },
    { kind: 'Service', value: svc('headless', [], ['10.1.0.2']) },
  );
  t.same(localServiceAddresses(s, 'n1'), [{ ip: '10.96.0.10', port: 80 }]);
  t.same(localServiceAddresses(s, 'n2'), [
    { ip: '10.96.0.10', port: 80 },
    { ip: '10.96.0.12', port: 80 },
  ]);
});

t.test('follows the store, and writes only what changed', async (t) => {
  class Recording extends Redirector {
    readonly writes: ServiceAddress[][] = [];
    override async captureServices(services: ServiceAddress[]): Promise<void> {
      this.writes.push(services);
    }
  }
  const redirector = new Recording();
  const s = store(...base, { kind: 'Service', value: svc('api', ['10.96.0.10'], ['10.1.0.2']) });
  const capture = new ServiceCapture({ store: s, node: 'n1', redirector, log: () => {} });
  await capture.start();
  t.same(redirector.writes, [[{ ip: '10.96.0.10', port: 80 }]]);
  await capture.update();
  t.equal(redirector.writes.length, 1, 'unchanged: no nft transaction');
  s.apply({ type: 'delta', epoch: 'e', revision: 2, base: 1, upserts: [{ kind: 'Service', value: svc('api', ['10.96.0.10'], ['10.2.0.2']) }], removes: [] });
  await capture.update();
  t.same(redirector.writes.at(-1), [], 'the endpoint moved away: nothing left to capture');
  capture.stop();
  s.apply({ type: 'delta', epoch: 'e', revision: 3, base: 2, upserts: [{ kind: 'Service', value: svc('api', ['10.96.0.10'], ['10.1.0.2']) }], removes: [] });
  await new Promise((r) => setTimeout(r, 20));
  t.equal(redirector.writes.length, 2, 'stopped (a draining agent): the successor owns the rules');
});
