import t from 'tap';
import type { CompiledMeshTLSPolicy } from '../../api/policy/model.ts';
import { PolicyIndex } from './index.ts';
import { INSTALL_NS, meshTls, selector, workload } from './test-fixtures.ts';

const web = workload('shop/web', { labels: { app: 'web' } });
const db = workload('data/db', { labels: { app: 'db' } });

function index(mtls: CompiledMeshTLSPolicy[]): PolicyIndex {
  return new PolicyIndex({ access: [], mtls, workloads: [web, db], services: [], installNamespace: INSTALL_NS });
}

t.test('no policy: the mesh default, and no policy named', async (t) => {
  t.same(index([]).mtlsMode(web, 8080, 'PERMISSIVE'), { mode: 'PERMISSIVE' });
  t.same(index([]).mtlsMode(web, 8080, 'STRICT'), { mode: 'STRICT' });
});

t.test('workload > namespace > mesh', async (t) => {
  const mesh = meshTls(`${INSTALL_NS}/mesh`, 'STRICT', { scope: 'mesh' });
  const ns = meshTls('shop/ns', 'PERMISSIVE', { scope: 'namespace' });
  const wl = meshTls('shop/web', 'STRICT', { selector: selector({ app: 'web' }) });
  t.same(index([mesh]).mtlsMode(web, 80, 'PERMISSIVE'), { mode: 'STRICT', policy: `${INSTALL_NS}/mesh` }, 'mesh over the default');
  t.same(index([mesh, ns]).mtlsMode(web, 80, 'PERMISSIVE'), { mode: 'PERMISSIVE', policy: 'shop/ns' }, 'namespace over mesh');
  t.same(index([wl, ns, mesh]).mtlsMode(web, 80, 'PERMISSIVE'), { mode: 'STRICT', policy: 'shop/web' }, 'workload over namespace, whatever the order');
  t.same(index([wl, ns, mesh]).mtlsMode(db, 80, 'PERMISSIVE'), { mode: 'STRICT', policy: `${INSTALL_NS}/mesh` }, 'another namespace only sees the mesh policy');
  const other = workload('shop/api', { labels: { app: 'api' } });
  t.same(index([wl, ns, mesh]).mtlsMode(other, 80, 'STRICT'), { mode: 'PERMISSIVE', policy: 'shop/ns' }, 'a workload the selector misses');
  const rogue = meshTls('data/rogue', 'PERMISSIVE', { scope: 'mesh' });
  t.same(index([mesh, rogue]).mtlsMode(web, 80, 'STRICT'), { mode: 'STRICT', policy: `${INSTALL_NS}/mesh` }, '`mesh` outside the install namespace stays in its namespace');
  t.same(index([mesh, rogue]).mtlsMode(db, 80, 'STRICT'), { mode: 'PERMISSIVE', policy: 'data/rogue' }, '... where it counts as a namespace policy');
});

t.test('among equally specific policies, the oldest wins, then the lowest key', async (t) => {
  const older = meshTls('shop/b-older', 'STRICT', { createdAt: '2025-01-01T00:00:00Z' });
  const newer = meshTls('shop/a-newer', 'PERMISSIVE', { createdAt: '2025-06-01T00:00:00Z' });
  t.same(index([newer, older]).mtlsMode(web, 80, 'PERMISSIVE'), { mode: 'STRICT', policy: 'shop/b-older' });
  t.same(index([older, newer]).mtlsMode(web, 80, 'PERMISSIVE'), { mode: 'STRICT', policy: 'shop/b-older' });
  const twinA = meshTls('shop/a', 'PERMISSIVE');
  const twinB = meshTls('shop/b', 'STRICT');
  t.same(index([twinB, twinA]).mtlsMode(web, 80, 'STRICT'), { mode: 'PERMISSIVE', policy: 'shop/a' }, 'same time: by key');
  const msA = meshTls('shop/sel-a', 'STRICT', { selector: selector({ app: 'web' }), createdAt: '2025-03-01T00:00:00Z' });
  const msB = meshTls('shop/sel-b', 'PERMISSIVE', { selector: selector({}), createdAt: '2025-02-01T00:00:00Z' });
  t.same(index([msA, msB]).mtlsMode(web, 80, 'STRICT'), { mode: 'PERMISSIVE', policy: 'shop/sel-b' }, 'two workload policies: the older');
});

t.test('per-port overrides of the winner', async (t) => {
  const ns = meshTls('shop/ns', 'STRICT', { ports: [{ port: 9090, mode: 'PERMISSIVE' }] });
  t.same(index([ns]).mtlsMode(web, 9090, 'STRICT'), { mode: 'PERMISSIVE', policy: 'shop/ns' }, 'the override');
  t.same(index([ns]).mtlsMode(web, 8080, 'STRICT'), { mode: 'STRICT', policy: 'shop/ns' }, 'other ports: the policy mode');
  const wl = meshTls('shop/web', 'STRICT', { selector: selector({ app: 'web' }) });
  t.same(index([ns, wl]).mtlsMode(web, 9090, 'PERMISSIVE'), { mode: 'STRICT', policy: 'shop/web' }, 'a loser’s port override does not apply');
  const mesh = meshTls(`${INSTALL_NS}/mesh`, 'PERMISSIVE', { scope: 'mesh', ports: [{ port: 5432, mode: 'STRICT' }] });
  t.same(index([mesh]).mtlsMode(db, 5432, 'PERMISSIVE'), { mode: 'STRICT', policy: `${INSTALL_NS}/mesh` });
});
