import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateStore } from './store.ts';
import { resolveTarget } from '../proxy/destination.ts';
import type { Resource, Service, Workload } from '../../api/agent-sync.ts';

const wl = (name: string, ip: string, node: string, meshed = true): Workload => ({
  key: `ns/${name}`,
  uid: `uid-${name}`,
  namespace: 'ns',
  name,
  node,
  ips: [ip],
  serviceAccount: 'default',
  identity: `spiffe://cluster.local/ns/ns/sa/default`,
  meshed,
  labels: { app: name },
  namedPorts: {},
});
const svc: Service = {
  key: 'ns/echo',
  namespace: 'ns',
  name: 'echo',
  clusterIPs: ['10.96.0.10'],
  ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }],
  endpoints: [
    { ip: '10.0.1.5', ports: { http: 8080 }, ready: true, workload: 'ns/a' },
    { ip: '10.0.2.5', ports: { http: 8080 }, ready: true, workload: 'ns/b' },
    { ip: '10.0.2.6', ports: { http: 8080 }, ready: false },
  ],
};
const res = (...r: (Workload | Service)[]): Resource[] => r.map((v) => ('ips' in v ? { kind: 'Workload', value: v } : { kind: 'Service', value: v }));
const config = { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' as const };

t.test('snapshot then delta; a delta on the wrong base is refused and changes nothing', async (t) => {
  const s = new StateStore();
  t.same(s.apply({ type: 'snapshot', epoch: 'e1', revision: 3, config, resources: res(wl('a', '10.0.1.5', 'n1'), svc) }), { ok: true, changed: true });
  t.equal(s.workloadByIP('10.0.1.5')?.name, 'a');
  t.equal(s.serviceByIP('10.96.0.10')?.name, 'echo');

  const bad = s.apply({ type: 'delta', epoch: 'e1', revision: 9, base: 7, upserts: res(wl('x', '10.0.9.9', 'n1')), removes: [] });
  t.equal(bad.ok, false);
  t.equal(s.workloadByIP('10.0.9.9'), undefined, 'nothing of the refused delta applied');
  t.equal(s.revision, 3);

  s.apply({ type: 'delta', epoch: 'e1', revision: 4, base: 3, upserts: res(wl('b', '10.0.2.5', 'n2')), removes: [{ kind: 'Workload', key: 'ns/a' }] });
  t.equal(s.workloadByIP('10.0.1.5'), undefined, 'removed');
  t.equal(s.workloadByIP('10.0.2.5')?.name, 'b', 'added');
  t.equal(s.revision, 4);
});

t.test('checkpoint survives a restart; a corrupt one is ignored', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = new StateStore();
  a.apply({ type: 'snapshot', epoch: 'e1', revision: 5, config: { ...config, mtlsMode: 'STRICT' }, resources: res(wl('a', '10.0.1.5', 'n1'), svc) });
  await a.save(join(dir, 'state.json'));
  const b = new StateStore();
  t.ok(await b.load(join(dir, 'state.json')));
  t.equal(b.revision, 5);
  t.equal(b.config.mtlsMode, 'STRICT');
  t.equal(b.workloadByIP('10.0.1.5')?.name, 'a');

  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'bad.json'), '{"epoch":"e","revision":1,"config":{"trustDomain":1}}');
  const c = new StateStore();
  t.notOk(await c.load(join(dir, 'bad.json')));
  t.equal(c.epoch, undefined);
});

t.test('services balance over ready endpoints only', async (t) => {
  const s = new StateStore();
  s.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config, resources: res(svc) });
  const seen = new Set<string>();
  let i = 0;
  for (let k = 0; k < 6; k++) {
    const r = resolveTarget(s, { ip: '10.96.0.10', port: 80 }, (n) => i++ % n);
    if ('error' in r) throw new Error(r.error);
    seen.add(`${r.target.ip}:${r.target.port}`);
  }
  t.same([...seen].sort(), ['10.0.1.5:8080', '10.0.2.5:8080'], 'round robin over the two ready endpoints, target port resolved');
  t.match(resolveTarget(s, { ip: '10.96.0.10', port: 81 }, () => 0), { error: /no TCP port 81/ });
  t.same(resolveTarget(s, { ip: '10.0.7.7', port: 5 }, () => 0), { target: { ip: '10.0.7.7', port: 5 } }, 'a pod address is its own target');
});
