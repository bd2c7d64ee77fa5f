// The index around the evaluator: port names and protocols from Services, which workloads a
// policy selects, and per-destination caches that follow a changed workload.
import t from 'tap';
import { PolicyIndex } from './index.ts';
import { INSTALL_NS, access, conn, from, meshTls, rule, selector, service, to, workload } from './test-fixtures.ts';

const web = workload('shop/web', { labels: { app: 'web' }, namedPorts: { http: 8080 } });
const other = workload('shop/other', { labels: { app: 'other' } });

t.test('port names and application protocol come from the Services backed by the workload', async (t) => {
  const services = [
    service('shop/web', [{ name: 'web', port: 80, appProtocol: 'kubernetes.io/h2c' }, { name: 'admin', port: 81, appProtocol: 'TCP' }], [
      { ip: '10.1.0.5', ports: { web: 8080, admin: 8081 }, ready: true, workload: 'shop/web' },
      { ip: '10.1.0.6', ports: { web: 9999 }, ready: true, workload: 'shop/other' },
    ]),
    service('shop/web-grpc', [{ name: 'grpc', port: 50051, appProtocol: 'grpc' }], [{ ip: '10.1.0.5', ports: { grpc: 8081 }, ready: true, workload: 'shop/web' }]),
    service('shop/udp', [{ name: 'dns', port: 53, protocol: 'UDP', appProtocol: 'http' }], [{ ip: '10.1.0.5', ports: { dns: 5353 }, ready: true, workload: 'shop/web' }]),
  ];
  const idx = new PolicyIndex({ access: [], mtls: [], workloads: [web, other], services, installNamespace: INSTALL_NS });
  t.same(idx.portInfo(web, 8080), { port: 8080, names: ['http', 'web'], appProtocol: 'h2c', http: true }, 'container and Service names; kubernetes.io/ stripped');
  t.same(idx.portInfo(web, 8081), { port: 8081, names: ['admin', 'grpc'], appProtocol: 'grpc', http: true }, 'Services disagree: HTTP wins');
  t.same(idx.portInfo(web, 5353), { port: 5353, names: [], appProtocol: 'tcp', http: false }, 'UDP Service ports do not name TCP ports');
  t.same(idx.portInfo(web, 7000), { port: 7000, names: [], appProtocol: 'tcp', http: false }, 'in no Service');
  t.same(idx.portInfo(other, 9999), { port: 9999, names: ['web'], appProtocol: 'h2c', http: true }, 'per workload: the other endpoint');
  t.same(idx.portInfo(other, 8080), { port: 8080, names: [], appProtocol: 'tcp', http: false });
});

t.test('which workloads a policy selects', async (t) => {
  const unmeshed = { ...workload('shop/legacy', { labels: { app: 'web' } }), meshed: false };
  const db = workload('data/db', { labels: { app: 'db' } });
  const idx = new PolicyIndex({ access: [], mtls: [], workloads: [web, other, unmeshed, db], services: [], installNamespace: INSTALL_NS });
  const keys = (ws: { key: string }[]) => ws.map((w) => w.key);
  t.same(keys(idx.selectedWorkloads(access('shop/p', 'ALLOW', [], { selector: selector({ app: 'web' }) }))), ['shop/web'], 'meshed workloads only');
  t.same(keys(idx.selectedWorkloads(access('shop/p', 'ALLOW', [], { scope: 'namespace' }))), ['shop/web', 'shop/other']);
  t.same(keys(idx.selectedWorkloads(meshTls(`${INSTALL_NS}/m`, 'STRICT', { scope: 'mesh' }))), ['shop/web', 'shop/other', 'data/db'], 'either kind');
  t.ok(idx.selects(access('shop/p', 'ALLOW', [], { scope: 'namespace' }), unmeshed), 'selects() does not look at opt-in');
});

t.test('the policies that apply to a destination, sorted by key', async (t) => {
  const ps = [access('shop/z', 'ALLOW', [rule()]), access(`${INSTALL_NS}/mesh`, 'DENY', [rule()], { scope: 'mesh' }), access('shop/a', 'AUDIT', [rule()], { selector: selector({ app: 'web' }) })];
  const idx = new PolicyIndex({ access: ps, mtls: [], workloads: [web, other], services: [], installNamespace: INSTALL_NS });
  t.same(idx.accessPoliciesFor(web), ['shop/a', 'shop/z', `${INSTALL_NS}/mesh`]);
  t.same(idx.accessPoliciesFor(other), ['shop/z', `${INSTALL_NS}/mesh`]);
});

t.test('a destination whose labels changed is re-evaluated, not served from the cache', async (t) => {
  const deny = access('shop/deny-web', 'DENY', [rule()], { selector: selector({ app: 'web' }) });
  const idx = new PolicyIndex({ access: [deny], mtls: [meshTls('shop/web', 'STRICT', { selector: selector({ app: 'web' }) })], workloads: [web], services: [], installNamespace: INSTALL_NS });
  t.equal(idx.evaluateConnection(conn(web, 8080)).verdict, 'deny');
  t.equal(idx.mtlsMode(web, 8080, 'PERMISSIVE').mode, 'STRICT');
  const relabelled = { ...web, labels: { app: 'web-v2' } };
  t.equal(idx.evaluateConnection(conn(relabelled, 8080)).verdict, 'allow');
  t.equal(idx.mtlsMode(relabelled, 8080, 'PERMISSIVE').mode, 'PERMISSIVE');
});

t.test('decisions are shared and immutable; audits are per decision', async (t) => {
  const ps = [access('shop/allow', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })] })]), access('shop/audit', 'AUDIT', [rule({ to: [to({ ports: [9090] })] })])];
  const idx = new PolicyIndex({ access: ps, mtls: [], workloads: [web], services: [], installNamespace: INSTALL_NS });
  const a = idx.evaluateConnection(conn(web, 8080, { principal: 'shop/x' }));
  const b = idx.evaluateConnection(conn(web, 8080, { principal: 'shop/y' }));
  t.equal(a, b, 'the same rule makes the same (shared) decision object');
  t.ok(Object.isFrozen(a) && Object.isFrozen(a.audits), 'frozen, so no caller can corrupt it for the next');
  const audited = idx.evaluateConnection(conn(web, 9090, { principal: 'shop/x' }));
  t.not(audited, a);
  t.same(audited.audits, [{ policy: 'shop/audit', rule: 'rules[0]' }]);
  t.same(a.audits, [], 'the shared decision did not get the audit');
});

t.test('building is cheap: nothing is computed per workload until asked', async (t) => {
  const workloads = Array.from({ length: 20_000 }, (_, i) => workload(`ns-${i % 200}/w-${i}`, { labels: { app: `a${i % 50}` } }));
  const policies = Array.from({ length: 2_000 }, (_, i) => access(`ns-${i % 200}/p-${i}`, 'ALLOW', [rule({ from: [from({ namespaces: ['x'] })] })], { selector: selector({ app: `a${i % 50}` }) }));
  const services = Array.from({ length: 5_000 }, (_, i) => service(`ns-${i % 200}/s-${i}`, [{ name: 'http', port: 80, appProtocol: 'http' }], [{ ip: '10.0.0.1', ports: { http: 8080 }, ready: true, workload: `ns-${i % 200}/w-${i}` }]));
  const start = performance.now();
  for (let i = 0; i < 10; i++) new PolicyIndex({ access: policies, mtls: [], workloads, services, installNamespace: INSTALL_NS });
  const perBuild = (performance.now() - start) / 10;
  t.ok(perBuild < 20, `one build with 2000 policies, 20000 workloads, 5000 Services: ${perBuild.toFixed(2)} ms`);
});
