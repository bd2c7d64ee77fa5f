// Micro-benchmark of the policy evaluator (not a test): ns per decision with ~50 policies in force,
// the shape a busy namespace has — a mesh-wide DENY, per-namespace ALLOW policies with identity
// lists and IP blocks, L7 rules on an HTTP port, an AUDIT policy.
//
//   node_modules/.bin/node agent/policy/bench.ts
import type { CompiledAccessPolicy } from '../../api/policy/model.ts';
import type { ConnectionAttrs, RequestAttrs } from './index.ts';
import { PolicyIndex } from './index.ts';
import { INSTALL_NS, access, conn, from, req, rule, selector, service, spiffe, to, when, workload } from './test-fixtures.ts';

const NAMESPACES = 10;
const policies: CompiledAccessPolicy[] = [access(`${INSTALL_NS}/deny-plaintext`, 'DENY', [rule({ from: [from({ notIdentities: ['*'] })] })], { scope: 'mesh' })];
for (let n = 0; n < NAMESPACES; n++) {
  const ns = n === 0 ? 'shop' : `team-${n}`;
  policies.push(
    access(`${ns}/allow-callers`, 'ALLOW', [
      rule({ from: [from({ identities: Array.from({ length: 20 }, (_, i) => spiffe(`caller-${i}`, 'sa')) })], to: [to({ ports: ['grpc'] })] }),
      rule({ from: [from({ namespaces: [ns], ipBlocks: [{ cidr: '10.0.0.0/8', except: ['10.99.0.0/16'] }] })] }),
    ]),
    access(`${ns}/allow-api`, 'ALLOW', [rule({ from: [from({ identities: ['spiffe://cluster.local/ns/frontend/*'] })], to: [to({ ports: [8080], methods: ['GET', 'POST'], paths: ['/api/*', '/healthz'] })] })], {
      selector: selector({ app: 'web' }),
    }),
    access(`${ns}/deny-admin`, 'DENY', [rule({ to: [to({ paths: ['/admin/*'] })], when: [when('request.headers[x-debug]', ['*'])] })], { selector: selector({ app: 'web' }) }),
    access(`${ns}/deny-legacy`, 'DENY', [rule({ from: [from({ namespaces: ['legacy-*'] })] })]),
    access(`${ns}/audit-writes`, 'AUDIT', [rule({ to: [to({ methods: ['DELETE'] })] })]),
  );
}
const web = workload('shop/web', { labels: { app: 'web' }, namedPorts: { http: 8080, grpc: 9000 } });
const svc = service('shop/web', [{ name: 'http', port: 80, appProtocol: 'http' }], [{ ip: '10.1.0.5', ports: { http: 8080 }, ready: true, workload: 'shop/web' }]);
const workloads = [web, ...Array.from({ length: 500 }, (_, i) => workload(`team-${i % NAMESPACES}/w-${i}`, { labels: { app: 'web' } }))];
const index = new PolicyIndex({ access: policies, mtls: [], workloads, services: [svc], installNamespace: INSTALL_NS });

function bench(name: string, iterations: number, fn: () => unknown): void {
  for (let i = 0; i < iterations / 10; i++) fn(); // warm up: caches and JIT
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  console.log(`${name.padEnd(58)} ${ns.toFixed(0).padStart(6)} ns/op`);
}

const l4Allow: ConnectionAttrs = conn(web, 9000, { principal: 'caller-17/sa', ip: '10.2.0.9' });
const l4Deny: ConnectionAttrs = conn(web, 9000, { principal: 'legacy-app/sa', ip: '10.2.0.9' });
const l4NoAllow: ConnectionAttrs = conn(web, 9000, { principal: 'stranger/sa', ip: '192.168.0.1' });
const inspect: ConnectionAttrs = conn(web, 8080, { principal: 'frontend/sa', ip: '10.2.0.9' });
const headers: Record<string, string> = { 'user-agent': 'bench' };
const get: RequestAttrs = req('GET', '/api/orders/42', { headers });
const admin: RequestAttrs = req('GET', '/admin/users', { headers: { 'x-debug': '1' } });

console.log(`${policies.length} AccessPolicies, ${index.accessPoliciesFor(web).length} apply to the destination; Node ${process.version}`);
bench('evaluateConnection, allowed by an identity in a list of 20', 2_000_000, () => index.evaluateConnection(l4Allow));
bench('evaluateConnection, denied by a DENY namespace prefix', 2_000_000, () => index.evaluateConnection(l4Deny));
bench('evaluateConnection, no ALLOW rule matches (implicit deny)', 2_000_000, () => index.evaluateConnection(l4NoAllow));
bench('evaluateConnection, HTTP port -> inspect', 2_000_000, () => index.evaluateConnection(inspect));
const d = index.evaluateConnection(inspect);
if (d.verdict !== 'inspect') throw new Error('expected inspect');
bench('requests.evaluate (inspected connection), allowed GET', 5_000_000, () => d.requests.evaluate(get));
bench('requests.evaluate (inspected connection), denied /admin/', 5_000_000, () => d.requests.evaluate(admin));
bench('evaluateRequest (connection + request, what the CLI calls)', 2_000_000, () => index.evaluateRequest(inspect, get));
bench('new PolicyIndex (51 policies, 501 workloads)', 200_000, () => new PolicyIndex({ access: policies, mtls: [], workloads, services: [svc], installNamespace: INSTALL_NS }));
bench('new PolicyIndex + first evaluateConnection (cold caches)', 100_000, () =>
  new PolicyIndex({ access: policies, mtls: [], workloads, services: [svc], installNamespace: INSTALL_NS }).evaluateConnection(l4Allow),
);
