// The workload of the suites that change agents under load: a meshed namespace with a TCP echo
// server (tests/helpers/policy-server.ts, port 9000, its own ServiceAccount) on node-1, and idle
// client pods where asked, all Ready and enrolled before the suite starts.
import { join } from 'node:path';
import { pod, REPO, type DevStatusJson, type Playground } from './playground.ts';

export const ECHO_PORT = 9000;

export async function deployEchoPods(pg: Playground, ns: string, clients: Record<string, string>): Promise<{ status: DevStatusJson; serverIP: string }> {
  await pg.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'weft.dev/mesh': 'enabled' } } });
  await pg.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'server', namespace: ns } });
  const server = pod(ns, 'server', [process.execPath, join(REPO, 'tests/helpers/policy-server.ts')], { node: 'node-1', port: ECHO_PORT }) as { spec: Record<string, unknown> };
  server.spec.serviceAccountName = 'server';
  await pg.apply(server);
  for (const [name, node] of Object.entries(clients)) await pg.apply(pod(ns, name, ['sleep', 'infinity'], { node }));
  await pg.waitReady(ns, ['--all']);
  const status = await pg.status();
  const serverIP = status.pods.find((p) => p.namespace === ns && p.name === 'server')?.ip ?? '';
  if (!status.pods.filter((p) => p.namespace === ns).every((p) => p.meshed)) throw new Error('the test pods are not all meshed');
  return { status, serverIP };
}
