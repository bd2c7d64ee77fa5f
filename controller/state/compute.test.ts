import t from 'tap';
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { appProtocolFor, computeService, computeWorkload, meshDecision, mergeEndpoints, namedContainerPorts, podIPs } from './compute.ts';

const TD = 'cluster.local';

function pod(over: { ns?: string; name?: string; annotations?: Record<string, string>; labels?: Record<string, string>; sa?: string; ips?: string[]; node?: string; hostNetwork?: boolean; phase?: string } = {}): V1Pod {
  const ips = over.ips ?? ['10.0.0.5'];
  return {
    metadata: { namespace: over.ns ?? 'shop', name: over.name ?? 'cart-1', uid: 'uid-1', annotations: over.annotations, labels: over.labels ?? { app: 'cart' } },
    spec: { nodeName: over.node ?? 'node-1', serviceAccountName: over.sa, hostNetwork: over.hostNetwork, containers: [] },
    status: { phase: over.phase ?? 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  };
}

function ns(name: string, labels?: Record<string, string>): V1Namespace {
  return { metadata: { name, labels } };
}

t.test('opt-in follows the pod annotation, then the namespace label', async (t) => {
  const plain = ns('shop');
  const meshedNs = ns('shop', { 'weft.dev/mesh': 'enabled' });
  t.strictSame(meshDecision(pod(), plain), { meshed: false, reason: 'not-opted-in' });
  t.strictSame(meshDecision(pod(), undefined), { meshed: false, reason: 'not-opted-in' }, 'an unknown namespace opts nothing in');
  t.strictSame(meshDecision(pod({ annotations: { 'weft.dev/mesh': 'enabled' } }), plain), { meshed: true, reason: 'pod-annotation' });
  t.strictSame(meshDecision(pod(), meshedNs), { meshed: true, reason: 'namespace-label' });
  t.strictSame(meshDecision(pod({ annotations: { 'weft.dev/mesh': 'disabled' } }), meshedNs), { meshed: false, reason: 'pod-opted-out' });
  t.strictSame(meshDecision(pod({ annotations: { 'weft.dev/mesh': 'yes' } }), plain), { meshed: false, reason: 'not-opted-in' }, 'only "enabled" opts in');
  t.strictSame(meshDecision(pod(), ns('shop', { 'weft.dev/mesh': 'true' })), { meshed: false, reason: 'not-opted-in' });
});

t.test('host-network pods and pods without an IP are never meshed', async (t) => {
  const optedIn = { annotations: { 'weft.dev/mesh': 'enabled' } };
  t.strictSame(meshDecision(pod({ ...optedIn, hostNetwork: true }), ns('shop', { 'weft.dev/mesh': 'enabled' })), { meshed: false, reason: 'host-network' });
  t.strictSame(meshDecision(pod({ ...optedIn, node: '' }), undefined), { meshed: false, reason: 'not-scheduled' });
  t.strictSame(meshDecision(pod({ ...optedIn, ips: [] }), undefined), { meshed: true, reason: 'pod-annotation' }, 'a scheduled pod is meshed before it has an IP');
  t.equal(computeWorkload(pod({ ...optedIn, hostNetwork: true }), undefined, TD), null, 'a host-network pod is no workload (its IP is the node)');
  t.equal(computeWorkload(pod({ ...optedIn, node: '' }), undefined, TD), null, 'an unscheduled pod is no workload');
  const early = computeWorkload(pod({ ...optedIn, ips: [] }), undefined, TD);
  t.same([early?.meshed, early?.ips], [true, []], 'a scheduled pod without an IP yet is announced, so its agent can decide at CNI ADD');
  t.equal(computeWorkload(pod({ ...optedIn, phase: 'Succeeded' }), undefined, TD), null, 'a finished pod is no workload (its IP may be reused)');
  t.equal(computeWorkload(pod({ ...optedIn, phase: 'Failed' }), undefined, TD), null);
});

t.test('named container ports, TCP only, for policies that name ports', async (t) => {
  const p = pod();
  p.spec = {
    ...p.spec,
    containers: [
      { name: 'a', ports: [{ name: 'web', containerPort: 8080 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { containerPort: 9 }] },
      { name: 'b', ports: [{ name: 'admin', containerPort: 9901, protocol: 'TCP' }] },
    ],
  };
  t.strictSame(namedContainerPorts(p), { admin: 9901, web: 8080 });
});

t.test('a workload carries identity, addresses and labels', async (t) => {
  const w = computeWorkload(pod({ sa: 'cart', ips: ['10.0.0.5', 'fd00::5'], labels: { version: 'v2', app: 'cart' } }), ns('shop', { 'weft.dev/mesh': 'enabled' }), 'example.org');
  t.strictSame(w, {
    key: 'shop/cart-1',
    uid: 'uid-1',
    namespace: 'shop',
    name: 'cart-1',
    node: 'node-1',
    ips: ['10.0.0.5', 'fd00::5'],
    serviceAccount: 'cart',
    identity: 'spiffe://example.org/ns/shop/sa/cart',
    meshed: true,
    labels: { app: 'cart', version: 'v2' },
    namedPorts: {},
    probePorts: [],
  });
  t.strictSame(Object.keys(w?.labels ?? {}), ['app', 'version'], 'labels in a fixed order, so equal pods compare equal');
  const unmeshed = computeWorkload(pod(), ns('shop'), TD);
  t.equal(unmeshed?.meshed, false, 'an unmeshed pod is still a workload: agents must know it is not in the mesh');
  t.equal(unmeshed?.identity, 'spiffe://cluster.local/ns/shop/sa/default', 'no service account means "default"');
});

t.test("node addresses: status.hostIPs, else hostIP, absent until the kubelet reports them", async (t) => {
  // Agents use them to prove which node a tunnel comes from (agent/hbone/source-claim.ts).
  const withStatus = (status: V1Pod['status']): V1Pod => ({ ...pod({ ips: ['10.0.0.5'] }), status: { ...pod({ ips: ['10.0.0.5'] }).status, ...status } });
  t.same(computeWorkload(withStatus({ hostIPs: [{ ip: '10.200.0.11' }, { ip: 'fd00::11' }], hostIP: '10.200.0.11' }), ns('shop'), TD)?.hostIPs, ['10.200.0.11', 'fd00::11']);
  t.same(computeWorkload(withStatus({ hostIP: '10.200.0.12' }), ns('shop'), TD)?.hostIPs, ['10.200.0.12'], 'the legacy single field');
  const unreported = computeWorkload(pod({ ips: ['10.0.0.5'] }), ns('shop'), TD) ?? {};
  t.notOk('hostIPs' in unreported, 'not announced before it is known');
});

t.test('pod IPs: podIPs first, podIP as the legacy fallback', async (t) => {
  t.strictSame(podIPs({ status: { podIP: '10.1.1.1' } }), ['10.1.1.1']);
  t.strictSame(podIPs({ status: { podIP: '10.1.1.1', podIPs: [{ ip: '10.1.1.1' }, { ip: 'fd00::1' }] } }), ['10.1.1.1', 'fd00::1']);
  t.strictSame(podIPs({ status: {} }), []);
});

t.test('appProtocol: declared, else implied by the port name, else the transport', async (t) => {
  t.equal(appProtocolFor({ port: 80, appProtocol: 'HTTP', name: 'tcp-x' }), 'http', 'a declared appProtocol wins, lower-cased');
  t.equal(appProtocolFor({ port: 80, appProtocol: 'kubernetes.io/h2c' }), 'http2', 'the standard h2c name maps to http2');
  t.equal(appProtocolFor({ port: 80, appProtocol: 'example.com/custom' }), 'example.com/custom', 'unknown declared values pass through');
  t.equal(appProtocolFor({ port: 80, name: 'http' }), 'http');
  t.equal(appProtocolFor({ port: 80, name: 'http-web' }), 'http');
  t.equal(appProtocolFor({ port: 80, name: 'http2' }), 'http2');
  t.equal(appProtocolFor({ port: 80, name: 'grpc-api' }), 'grpc');
  t.equal(appProtocolFor({ port: 80, name: 'grpc-web' }), 'grpc-web');
  t.equal(appProtocolFor({ port: 80, name: 'grpc-web-public' }), 'grpc-web');
  t.equal(appProtocolFor({ port: 80, name: 'grpc-webhooks' }), 'grpc', 'grpc-web must be a whole segment');
  t.equal(appProtocolFor({ port: 80, name: 'tcp-db' }), 'tcp');
  t.equal(appProtocolFor({ port: 80, name: 'httpx' }), 'tcp', 'a prefix must be a whole segment');
  t.equal(appProtocolFor({ port: 80, name: 'web' }), 'tcp', 'an unknown name falls back to the transport');
  t.equal(appProtocolFor({ port: 53, name: 'dns', protocol: 'UDP' }), 'udp');
  t.equal(appProtocolFor({ port: 80 }), 'tcp', 'an unnamed TCP port is tcp');
});

function slice(name: string, svc: string, endpoints: NonNullable<V1EndpointSlice['endpoints']>, ports: NonNullable<V1EndpointSlice['ports']>, addressType = 'IPv4'): V1EndpointSlice {
  return { addressType, metadata: { namespace: 'shop', name, labels: { 'kubernetes.io/service-name': svc } }, endpoints, ports };
}

const cartService: V1Service = {
  metadata: { namespace: 'shop', name: 'cart' },
  spec: {
    clusterIP: '10.96.0.10',
    clusterIPs: ['10.96.0.10', 'fd00:96::10'],
    ports: [
      { name: 'http', port: 80, targetPort: 'web', protocol: 'TCP' },
      { name: 'admin', port: 9000, protocol: 'TCP', appProtocol: 'grpc' },
    ],
  },
};

t.test('a Service merges the endpoints of all its slices', async (t) => {
  const slices = [
    slice('cart-a', 'cart', [
      { addresses: ['10.0.0.7'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'cart-2', namespace: 'shop' } },
      { addresses: ['10.0.0.5'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'cart-1', namespace: 'shop' } },
    ], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'admin', port: 9000, protocol: 'TCP' }]),
    slice('cart-b', 'cart', [{ addresses: ['10.0.0.9'] }], [{ name: 'http', port: 8081, protocol: 'TCP' }]),
    slice('cart-v6', 'cart', [{ addresses: ['fd00::7'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'cart-2' } }], [{ name: 'http', port: 8080 }], 'IPv6'),
    slice('dns', 'cart', [{ addresses: ['cart.example.com'] }], [{ name: 'http', port: 80 }], 'FQDN'),
    slice('other', 'orders', [{ addresses: ['10.0.0.99'] }], [{ name: 'http', port: 80 }]),
    { ...slice('foreign', 'cart', [{ addresses: ['10.9.9.9'] }], [{ name: 'http', port: 80 }]), metadata: { namespace: 'elsewhere', name: 'x', labels: { 'kubernetes.io/service-name': 'cart' } } },
  ];
  const s = computeService(cartService, slices);
  t.strictSame(s, {
    key: 'shop/cart',
    namespace: 'shop',
    name: 'cart',
    clusterIPs: ['10.96.0.10', 'fd00:96::10'],
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' },
      { name: 'admin', port: 9000, protocol: 'TCP', appProtocol: 'grpc' },
    ],
    endpoints: [
      { ip: '10.0.0.5', ports: { admin: 9000, http: 8080 }, ready: false, workload: 'shop/cart-1' },
      { ip: '10.0.0.7', ports: { admin: 9000, http: 8080 }, ready: true, workload: 'shop/cart-2' },
      { ip: '10.0.0.9', ports: { http: 8081 }, ready: true },
      { ip: 'fd00::7', ports: { http: 8080 }, ready: true, workload: 'shop/cart-2' },
    ],
  });
  t.notOk(s?.endpoints.some((e) => e.ip === '10.0.0.99' || e.ip === '10.9.9.9'), "other Services' and other namespaces' slices are ignored");
});

t.test('an address in two slices is listed once, ready if either says so', async (t) => {
  const eps = mergeEndpoints([
    slice('a', 'cart', [{ addresses: ['10.0.0.5'], conditions: { ready: false } }], [{ name: 'http', port: 8080 }]),
    slice('b', 'cart', [{ addresses: ['10.0.0.5'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'cart-1', namespace: 'shop' } }], [{ name: 'metrics', port: 9090 }]),
  ]);
  t.strictSame(eps, [{ ip: '10.0.0.5', ports: { http: 8080, metrics: 9090 }, ready: true, workload: 'shop/cart-1' }]);
});

t.test('headless and ExternalName Services', async (t) => {
  const headless = computeService({ metadata: { namespace: 'shop', name: 'db' }, spec: { clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 5432, name: 'tcp-pg' }] } }, []);
  t.strictSame(headless?.clusterIPs, [], 'a headless Service has no cluster IPs');
  t.strictSame(headless?.ports, [{ name: 'tcp-pg', port: 5432, protocol: 'TCP', appProtocol: 'tcp' }]);
  t.equal(computeService({ metadata: { namespace: 'shop', name: 'ext' }, spec: { type: 'ExternalName', externalName: 'example.com' } }, []), null);
});

t.test('the same objects in another order compute the same resources', async (t) => {
  const a = slice('a', 'cart', [{ addresses: ['10.0.0.2'] }, { addresses: ['10.0.0.1'] }], [{ name: 'http', port: 1 }, { name: 'admin', port: 2 }]);
  const b = slice('b', 'cart', [{ addresses: ['10.0.0.3'] }], [{ name: 'http', port: 1 }]);
  t.strictSame(JSON.stringify(computeService(cartService, [a, b])), JSON.stringify(computeService(cartService, [b, a])));
});

t.test('trace sampling: the pod annotation, else the namespace annotation; a bad value is ignored', async (t) => {
  const annotated = (v: string): V1Namespace => ({ metadata: { name: 'shop', annotations: { 'weft.dev/trace-sampling': v } } });
  t.equal(computeWorkload(pod(), ns('shop'), TD)?.traceSampling, undefined, 'neither: the chart decides');
  t.equal(computeWorkload(pod(), annotated('0.25'), TD)?.traceSampling, 0.25);
  t.equal(computeWorkload(pod(), annotated('5%'), TD)?.traceSampling, 0.05);
  t.equal(computeWorkload(pod({ annotations: { 'weft.dev/trace-sampling': '1' } }), annotated('0'), TD)?.traceSampling, 1, 'the pod wins');
  t.equal(computeWorkload(pod({ annotations: { 'weft.dev/trace-sampling': 'lots' } }), annotated('0.5'), TD)?.traceSampling, 0.5, "a pod value that does not parse leaves the namespace's");
  t.equal(computeWorkload(pod(), annotated('1.5'), TD)?.traceSampling, undefined, 'out of range: ignored');
});
