// Run by workers.test.ts inside a network namespace whose output chain redirects TCP to port
// DIALLED to the workers' HBONE port (as the node capture would), so SO_ORIGINAL_DST answers.
// Drives two data-plane workers through state and certificate replication, tunnels, a delta,
// aggregated metrics and drain; prints one JSON line of what it saw.
import { once } from 'node:events';
import type { ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import type { Workload } from '../../api/agent-sync.ts';
import { HbonePool } from '../hbone/pool.ts';
import { createTestMesh } from '../hbone/test-fixtures.ts';
import { DEFAULT_L7_LIMITS, DEFAULT_PATH_OPTIONS } from '../l7/index.ts';
import { registry } from '../metrics.ts';
import { ReplicatedStore } from '../replica.ts';
import { DataPlaneWorkers } from '../workers.ts';

const [dialled, hbonePort] = process.argv.slice(2).map(Number) as [number, number];
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const SERVER = 'spiffe://cluster.local/ns/shop/sa/checkout';
const mesh = await createTestMesh();
const [clientCert, serverCert] = await Promise.all([mesh.issue(CLIENT), mesh.issue(SERVER)]);
const checkout: Workload = {
  key: 'shop/checkout', uid: 'u-checkout', namespace: 'shop', name: 'checkout', node: 'n1', ips: ['127.0.0.1'],
  serviceAccount: 'checkout', identity: SERVER, meshed: true, labels: {}, namedPorts: {},
};
const store = new ReplicatedStore();
store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' }, resources: [{ kind: 'Workload', value: checkout }] });

const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
echo.listen(0, '127.0.0.1');
await once(echo, 'listening');
const target = { ip: '127.0.0.1', port: (echo.address() as net.AddressInfo).port };

// The certificate reaches the workers after they start, as a renewal would.
const held = new Map<string, typeof serverCert>();
const workers = new DataPlaneWorkers({
  count: 2,
  entry: new URL('../main.ts', import.meta.url),
  settings: { node: 'n1', installNamespace: 'weft-system', idleTimeoutMs: 60_000, l7: { limits: DEFAULT_L7_LIMITS, path: DEFAULT_PATH_OPTIONS }, listenOn: { host: '127.0.0.1', ports: { outbound: hbonePort + 1, inboundPlaintext: hbonePort + 2, hbone: hbonePort } } },
  store,
  certificates: { certificateFor: (id) => held.get(id) },
  identities: () => [SERVER],
  log: () => {},
});
await workers.listen();
held.set(SERVER, serverCert);
workers.certificateChanged(SERVER);

/**
 * One tunnel per TCP connection (a pool each), so the kernel spreads them over the workers. The
 * pools are left to the workers' drain: its GOAWAY makes each close its connection.
 */
async function tunnel(): Promise<{ stream: ClientHttp2Stream; echoed: string } | { error: string }> {
  const pool = new HbonePool({ secureContextFor: () => clientCert.secureContext, hbonePort: dialled, connectTimeoutMs: 3000, openTimeoutMs: 3000 });
  try {
    const stream = await pool.open({ source: CLIENT, destinationIdentity: SERVER, target });
    stream.write('ping');
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    return { stream, echoed: chunk.toString() };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

const TUNNELS = 16;
const opened = await Promise.all(Array.from({ length: TUNNELS }, tunnel));
const echoed = opened.filter((r) => 'echoed' in r && r.echoed === 'ping').length;
const connections = (await workers.openConnections()).length;
const perWorker = await workers.connectionsPerWorker();
const metrics = await workers.metrics(registry);
const openedMetric = metrics.text
  .split('\n')
  .filter((l) => l.startsWith('weft_tcp_connections_opened_total{') && l.includes('response_flags="-"'))
  .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
for (const r of opened) if ('stream' in r) r.stream.destroy();

// A delta that removes the workload: every worker refuses the next tunnel to it.
store.apply({ type: 'delta', epoch: 'e1', revision: 2, base: 1, upserts: [], removes: [{ kind: 'Workload', key: checkout.key }] });
const afterRemoval = await Promise.all(Array.from({ length: 4 }, tunnel));
const refusedAfterRemoval = afterRemoval.filter((r) => 'error' in r).length;
for (const r of afterRemoval) if ('stream' in r) r.stream.destroy();

const drained = await Promise.race([workers.drain().then(() => 'drained'), new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
await workers.close({ reset: true });
echo.close();
process.stdout.write(`${JSON.stringify({ echoed, connections, perWorker, openedMetric, refusedAfterRemoval, drained, workers: workers.count })}\n`);
process.exit(0);
