// The routed-path tests' state: Service a/web (HTTP port 80) whose endpoints are 127.0.0.1 on the
// given ports, one HTTPRoute in namespace a sending everything to it, both in a real StateStore;
// and a RouteProxy behind a local TCP front (with an h2c client session to it).
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import type { Test } from 'tap';
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { StateStore } from '../state/store.ts';
import type { RequestTracing } from '../tracing/index.ts';
import { RouteProxy } from './proxy.ts';

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

/**
 * A RouteProxy serving `source`'s connections to `service`:`port` (no tunnels: every backend is
 * local), behind a TCP front on loopback; its port, and a teardown that closes the front and every
 * connection it accepted (a session stuck in a write does not end on the client's FIN).
 */
export async function routeFront(store: StateStore, source: Workload, service: Service, port: number, tracing?: RequestTracing): Promise<{ port: number; close: () => void }> {
  const p = { store, node: 'node-a', report: new ConnectionReporter(() => {}), enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }), connectTimeoutMs: 2000, idleTimeoutMs: 10_000, ...(tracing ? { tracing } : {}) };
  const proxy = new RouteProxy({ p, openTunnel: () => Promise.reject(new Error('no tunnel')) });
  const downs = new Set<net.Socket>();
  const front = net.createServer({ allowHalfOpen: true }, (down) => {
    downs.add(down);
    down.once('close', () => downs.delete(down));
    proxy.serve(down, source, service, port, () => down.destroy());
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  return {
    port: (front.address() as net.AddressInfo).port,
    close: () => {
      for (const d of downs) d.destroy();
      front.close();
    },
  };
}

/**
 * routeFront() and an h2c session to it (with `session`'s settings, session window and memory,
 * else Node's); closed at teardown.
 */
export async function h2Front(
  t: Test,
  store: StateStore,
  source: Workload,
  service: Service,
  port: number,
  tracing?: RequestTracing,
  session?: { settings: http2.Settings; window: number; maxSessionMemory: number },
): Promise<http2.ClientHttp2Session> {
  const front = await routeFront(store, source, service, port, tracing);
  const client = http2.connect(`http://127.0.0.1:${front.port}`, session ? { settings: session.settings, maxSessionMemory: session.maxSessionMemory } : {});
  client.on('error', () => {});
  if (session) client.once('connect', () => client.setLocalWindowSize(session.window));
  t.teardown(() => {
    client.destroy();
    front.close();
  });
  return client;
}

/** A meshed client pod in namespace a (service account client) on node-a. */
export function routeClient(name = 'client-1'): Workload {
  return {
    key: `a/${name}`,
    uid: 'u1',
    namespace: 'a',
    name,
    node: 'node-a',
    ips: ['10.0.0.9'],
    serviceAccount: 'client',
    identity: 'spiffe://cluster.local/ns/a/sa/client',
    meshed: true,
    labels: { app: 'client' },
    namedPorts: {},
  };
}

/** An h2c server on loopback handing each stream to `onStream`; its sessions are destroyed at teardown. */
export async function h2Backend(
  t: Test,
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
  o: { options?: http2.ServerOptions; sessionWindow?: number } = {},
): Promise<number> {
  const server = http2.createServer(o.options ?? {});
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    if (o.sessionWindow) s.setLocalWindowSize(o.sessionWindow);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sessions) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}
