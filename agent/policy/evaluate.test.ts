// The evaluator's truth table: each semantic of api/policy/model.ts, proven on a PolicyIndex built
// the way the agent builds it.
import t from 'tap';
import type { CompiledAccessPolicy } from '../../api/policy/model.ts';
import type { ConnectionAttrs, ConnectionDecision, Decision, RequestAttrs } from './index.ts';
import { PolicyIndex } from './index.ts';
import { INSTALL_NS, access, conn, from, req, rule, selector, service, spiffe, to, when, workload } from './test-fixtures.ts';

// shop/web: container ports 8080 (`http`, behind Service port `web` with appProtocol http) and
// 9090 (`metrics`, plain TCP); 5432 is unnamed and in no Service.
const web = workload('shop/web', { labels: { app: 'web', tier: 'front' }, namedPorts: { http: 8080, metrics: 9090 }, ips: ['10.1.0.5', 'fd00:1::5'] });
const db = workload('data/db', { labels: { app: 'db' }, namedPorts: { pg: 5432 } });
const webSvc = service('shop/web', [{ name: 'web', port: 80, appProtocol: 'http' }], [{ ip: '10.1.0.5', ports: { web: 8080 }, ready: true, workload: 'shop/web' }]);
const HTTP = 8080;
const TCP = 9090;

function index(policies: CompiledAccessPolicy[]): PolicyIndex {
  return new PolicyIndex({ access: policies, mtls: [], workloads: [web, db], services: [webSvc], installNamespace: INSTALL_NS });
}

function final(d: ConnectionDecision): Decision {
  if (d.verdict === 'inspect') throw new Error(`expected a final decision, got inspect: ${d.reason}`);
  return d;
}

/** The connection's verdict (inspect included). */
const onConn = (ps: CompiledAccessPolicy[], attrs: ConnectionAttrs) => index(ps).evaluateConnection(attrs).verdict;
/** The verdict for one request on the connection. */
const onReq = (ps: CompiledAccessPolicy[], attrs: ConnectionAttrs, r: RequestAttrs) => index(ps).evaluateRequest(attrs, r).verdict;

const GET = req('GET', '/');

t.test('no policy applies: allowed, and nothing is named as the decider', async (t) => {
  const d = final(index([]).evaluateConnection(conn(web, HTTP, { principal: 'shop/frontend' })));
  t.same(d, { verdict: 'allow', reason: 'allowed: no policy applies', audits: [] });
  t.equal(d.policy, undefined);
  const other = final(index([access('data/deny-all', 'DENY', [rule()])]).evaluateConnection(conn(web, HTTP)));
  t.equal(other.reason, 'allowed: no policy applies', 'a policy of another namespace does not apply');
});

t.test('ALLOW with no rules allows nothing', async (t) => {
  const d = final(index([access('shop/nothing', 'ALLOW', [])]).evaluateConnection(conn(web, HTTP, { principal: 'shop/frontend' })));
  t.same(d, { verdict: 'deny', reason: 'no ALLOW rule matched (policies: shop/nothing)', audits: [] });
  t.equal(onReq([access('shop/nothing', 'ALLOW', [])], conn(web, HTTP), GET), 'deny');
});

t.test('an empty rule matches everything', async (t) => {
  t.equal(onConn([access('shop/all', 'ALLOW', [rule()])], conn(web, TCP)), 'allow');
  t.equal(onConn([access('shop/all', 'DENY', [rule()])], conn(web, TCP)), 'deny');
});

t.test('identities: exact, prefix, suffix, any, and their negations', async (t) => {
  const allow = (p: Partial<Parameters<typeof from>[0]>) => [access('shop/ids', 'ALLOW', [rule({ from: [from(p)] })])];
  const cases: [string, Partial<Parameters<typeof from>[0]>, string | undefined, 'allow' | 'deny'][] = [
    ['exact, same', { identities: [spiffe('shop', 'frontend')] }, 'shop/frontend', 'allow'],
    ['exact, other', { identities: [spiffe('shop', 'frontend')] }, 'shop/backend', 'deny'],
    ['exact, plaintext', { identities: [spiffe('shop', 'frontend')] }, undefined, 'deny'],
    ['prefix, inside', { identities: ['spiffe://cluster.local/ns/shop/*'] }, 'shop/anything', 'allow'],
    ['prefix, outside', { identities: ['spiffe://cluster.local/ns/shop/*'] }, 'shopping/x', 'deny'],
    ['suffix, inside', { identities: ['*/sa/frontend'] }, 'other/frontend', 'allow'],
    ['suffix, outside', { identities: ['*/sa/frontend'] }, 'other/frontend-2', 'deny'],
    ['any, mTLS', { identities: ['*'] }, 'any/one', 'allow'],
    ['any, plaintext', { identities: ['*'] }, undefined, 'deny'],
    ['one of several', { identities: [spiffe('a', 'b'), '*/sa/frontend'] }, 'shop/frontend', 'allow'],
    ['not exact, listed', { notIdentities: [spiffe('shop', 'frontend')] }, 'shop/frontend', 'deny'],
    ['not exact, other', { notIdentities: [spiffe('shop', 'frontend')] }, 'shop/backend', 'allow'],
    ['not exact, plaintext', { notIdentities: [spiffe('shop', 'frontend')] }, undefined, 'allow'],
    ['not prefix', { notIdentities: ['spiffe://cluster.local/ns/shop/*'] }, 'shop/x', 'deny'],
    ['not suffix', { notIdentities: ['*/sa/frontend'] }, 'x/frontend', 'deny'],
    ['not any = plaintext only, mTLS', { notIdentities: ['*'] }, 'shop/frontend', 'deny'],
    ['not any = plaintext only, plaintext', { notIdentities: ['*'] }, undefined, 'allow'],
  ];
  for (const [name, src, principal, want] of cases) {
    t.equal(onConn(allow(src), conn(web, TCP, principal ? { principal } : {})), want, name);
  }
});

t.test('namespaces, negated namespaces, and namespaces a selector resolved to', async (t) => {
  const allow = (p: Partial<Parameters<typeof from>[0]>) => [access('shop/ns', 'ALLOW', [rule({ from: [from(p)] })])];
  t.equal(onConn(allow({ namespaces: ['shop'] }), conn(web, TCP, { principal: 'shop/a' })), 'allow');
  t.equal(onConn(allow({ namespaces: ['shop'] }), conn(web, TCP, { principal: 'data/a' })), 'deny');
  t.equal(onConn(allow({ namespaces: ['shop'] }), conn(web, TCP)), 'deny', 'plaintext has no namespace');
  t.equal(onConn(allow({ namespaces: ['team-*'] }), conn(web, TCP, { principal: 'team-blue/a' })), 'allow', 'prefix');
  t.equal(onConn(allow({ notNamespaces: ['data'] }), conn(web, TCP, { principal: 'data/a' })), 'deny');
  t.equal(onConn(allow({ notNamespaces: ['data'] }), conn(web, TCP, { principal: 'shop/a' })), 'allow');
  t.equal(onConn(allow({ selectedNamespaces: ['shop', 'web'] }), conn(web, TCP, { principal: 'web/a' })), 'allow');
  t.equal(onConn(allow({ selectedNamespaces: ['shop', 'web'] }), conn(web, TCP, { principal: 'data/a' })), 'deny');
  t.equal(onConn(allow({ selectedNamespaces: ['shop'] }), conn(web, TCP)), 'deny', 'plaintext');
  t.equal(onConn(allow({ selectedNamespaces: [] }), conn(web, TCP, { principal: 'shop/a' })), 'deny', 'a selector that matched no namespace admits none');
  t.equal(onConn(allow({ namespaces: ['shop', 'data'], notNamespaces: ['data'] }), conn(web, TCP, { principal: 'data/a' })), 'deny', 'fields of one entry are ANDed');
});

t.test('ipBlocks with except, IPv4 and IPv6', async (t) => {
  const v4 = [access('shop/ip', 'ALLOW', [rule({ from: [from({ ipBlocks: [{ cidr: '10.0.0.0/8', except: ['10.9.0.0/16', '10.10.10.10/32'] }] })] })])];
  t.equal(onConn(v4, conn(web, TCP, { ip: '10.2.0.9' })), 'allow');
  t.equal(onConn(v4, conn(web, TCP, { ip: '10.9.1.1' })), 'deny', 'in an except');
  t.equal(onConn(v4, conn(web, TCP, { ip: '10.10.10.10' })), 'deny', 'in the other except');
  t.equal(onConn(v4, conn(web, TCP, { ip: '10.10.10.11' })), 'allow');
  t.equal(onConn(v4, conn(web, TCP, { ip: '192.168.0.1' })), 'deny', 'outside');
  t.equal(onConn(v4, conn(web, TCP, { ip: '::ffff:10.2.0.9' })), 'allow', 'IPv4-mapped IPv6 peer');
  t.equal(onConn(v4, conn(web, TCP, { ip: 'fd00::1' })), 'deny', 'IPv6 peer');

  const v6 = [access('shop/ip6', 'ALLOW', [rule({ from: [from({ ipBlocks: [{ cidr: 'fd00::/16', except: ['fd00:bad::/32'] }] })] })])];
  t.equal(onConn(v6, conn(web, TCP, { ip: 'fd00:1::9' })), 'allow');
  t.equal(onConn(v6, conn(web, TCP, { ip: 'fd00:bad::9' })), 'deny', 'in the except');
  t.equal(onConn(v6, conn(web, TCP, { ip: 'fd01::9' })), 'deny', 'outside');
  t.equal(onConn(v6, conn(web, TCP, { ip: '10.2.0.9' })), 'deny', 'IPv4 peer');

  const not = [access('shop/notip', 'DENY', [rule({ from: [from({ notIpBlocks: [{ cidr: '10.0.0.0/8', except: ['10.66.0.0/16'] }] })] })])];
  t.equal(onConn(not, conn(web, TCP, { ip: '10.2.0.9' })), 'allow', 'inside the block: the DENY rule does not match');
  t.equal(onConn(not, conn(web, TCP, { ip: '10.66.0.1' })), 'deny', 'in the except, so not in the block');
  t.equal(onConn(not, conn(web, TCP, { ip: '203.0.113.1' })), 'deny');
});

t.test('DENY is evaluated before ALLOW', async (t) => {
  const ps = [
    access('shop/allow-shop', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })] })]),
    access('shop/deny-bad', 'DENY', [rule({ name: 'no-bad', from: [from({ identities: [spiffe('shop', 'bad')] })] })]),
  ];
  const d = final(index(ps).evaluateConnection(conn(web, TCP, { principal: 'shop/bad' })));
  t.same(d, { verdict: 'deny', policy: 'shop/deny-bad', rule: 'no-bad', reason: 'denied by DENY policy shop/deny-bad rule no-bad', audits: [] });
  const ok = final(index(ps).evaluateConnection(conn(web, TCP, { principal: 'shop/good' })));
  t.same(ok, { verdict: 'allow', policy: 'shop/allow-shop', rule: 'rules[0]', reason: 'allowed by ALLOW policy shop/allow-shop rule rules[0]', audits: [] });
  const none = final(index(ps).evaluateConnection(conn(web, TCP, { principal: 'data/x' })));
  t.equal(none.reason, 'no ALLOW rule matched (policies: shop/allow-shop)');
  t.equal(none.policy, undefined, 'the implicit deny names no policy');
});

t.test('several ALLOW policies: any rule of any of them allows; the reason lists them all', async (t) => {
  const ps = [access('shop/b', 'ALLOW', [rule({ from: [from({ namespaces: ['b'] })] })]), access('shop/a', 'ALLOW', [rule({ from: [from({ namespaces: ['a'] })] })])];
  t.equal(onConn(ps, conn(web, TCP, { principal: 'a/x' })), 'allow');
  t.equal(onConn(ps, conn(web, TCP, { principal: 'b/x' })), 'allow');
  t.equal(final(index(ps).evaluateConnection(conn(web, TCP, { principal: 'c/x' }))).reason, 'no ALLOW rule matched (policies: shop/a, shop/b)');
});

t.test('a DENY policy alone allows what it does not match', async (t) => {
  const d = final(index([access('shop/deny-data', 'DENY', [rule({ from: [from({ namespaces: ['data'] })] })])]).evaluateConnection(conn(web, TCP, { principal: 'shop/x' })));
  t.same(d, { verdict: 'allow', reason: 'allowed: no DENY rule matched and no ALLOW policy applies', audits: [] });
});

t.test('AUDIT rules are recorded and never change the verdict', async (t) => {
  const audit = access('shop/watch', 'AUDIT', [rule({ name: 'from-data', from: [from({ namespaces: ['data'] })] }), rule({ name: 'everyone' })]);
  const d1 = final(index([audit]).evaluateConnection(conn(web, TCP, { principal: 'data/x' })));
  t.equal(d1.verdict, 'allow');
  t.same(d1.audits, [
    { policy: 'shop/watch', rule: 'from-data' },
    { policy: 'shop/watch', rule: 'everyone' },
  ]);
  t.same(final(index([audit]).evaluateConnection(conn(web, TCP, { principal: 'shop/x' }))).audits, [{ policy: 'shop/watch', rule: 'everyone' }]);

  const deny = access('shop/deny', 'DENY', [rule({ from: [from({ namespaces: ['data'] })] })]);
  const d2 = final(index([audit, deny]).evaluateConnection(conn(web, TCP, { principal: 'data/x' })));
  t.equal(d2.verdict, 'deny');
  t.equal(d2.audits.length, 2, 'a denied connection still carries its audit records');

  const allow = access('shop/allow', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })] })]);
  const d3 = final(index([audit, allow]).evaluateConnection(conn(web, TCP, { principal: 'data/x' })));
  t.equal(d3.verdict, 'deny', 'AUDIT does not count as ALLOW');
  t.equal(d3.reason, 'no ALLOW rule matched (policies: shop/allow)');
});

t.test('scope: mesh-wide, namespace, workload', async (t) => {
  const meshDeny = access(`${INSTALL_NS}/deny-plaintext`, 'DENY', [rule({ from: [from({ notIdentities: ['*'] })] })], { scope: 'mesh' });
  t.equal(onConn([meshDeny], conn(web, TCP)), 'deny', 'a mesh policy applies in shop');
  t.equal(onConn([meshDeny], conn(db, 5432)), 'deny', 'and in data');
  t.equal(onConn([meshDeny], conn(db, 5432, { principal: 'shop/x' })), 'allow');

  const meshSelected = access(`${INSTALL_NS}/deny-db`, 'DENY', [rule()], { scope: 'mesh', selector: selector({ app: 'db' }) });
  t.equal(onConn([meshSelected], conn(db, 5432)), 'deny', 'a mesh policy with a selector: selected');
  t.equal(onConn([meshSelected], conn(web, TCP)), 'allow', 'not selected');

  const rogue = access('data/pretends-mesh', 'DENY', [rule()], { scope: 'mesh' });
  t.equal(onConn([rogue], conn(db, 5432)), 'deny', '`mesh` outside the install namespace governs its own namespace');
  t.equal(onConn([rogue], conn(web, TCP)), 'allow', '... and no other');

  const ns = access('shop/deny-all', 'DENY', [rule()], { scope: 'namespace' });
  t.equal(onConn([ns], conn(web, TCP)), 'deny');
  t.equal(onConn([ns], conn(db, 5432)), 'allow', 'another namespace');

  const wl = access('shop/deny-front', 'DENY', [rule()], { selector: selector({ tier: 'front' }) });
  t.equal(onConn([wl], conn(web, TCP)), 'deny');
  const back = workload('shop/api', { labels: { tier: 'back' } });
  t.equal(onConn([wl], conn(back, TCP)), 'allow', 'not selected by labels');
  const frontElsewhere = workload('data/front', { labels: { tier: 'front' } });
  t.equal(onConn([wl], conn(frontElsewhere, TCP)), 'allow', 'right labels, other namespace');
});

t.test('ports: by number, by container-port name, by Service port name, and negated', async (t) => {
  const allowTo = (ports: (number | string)[], notPorts: (number | string)[] = []) => [access('shop/ports', 'ALLOW', [rule({ to: [to({ ports, notPorts })] })])];
  t.equal(onConn(allowTo([8080]), conn(web, 8080)), 'allow');
  t.equal(onConn(allowTo([8080]), conn(web, 9090)), 'deny');
  t.equal(onConn(allowTo(['http']), conn(web, 8080)), 'allow', 'container port name');
  t.equal(onConn(allowTo(['metrics']), conn(web, 9090)), 'allow', 'container port name');
  t.equal(onConn(allowTo(['metrics']), conn(web, 8080)), 'deny');
  t.equal(onConn(allowTo(['web']), conn(web, 8080)), 'allow', 'Service port name whose endpoint targets 8080');
  t.equal(onConn(allowTo(['web']), conn(web, 9090)), 'deny');
  t.equal(onConn(allowTo([80]), conn(web, 8080)), 'deny', 'the Service port number is not the destination port');
  t.equal(onConn(allowTo(['pg']), conn(web, 5432)), 'deny', "another workload's port name");
  t.equal(onConn(allowTo(['pg']), conn(db, 5432)), 'allow', 'names resolve per destination');
  t.equal(onConn(allowTo([], [9090]), conn(web, 8080)), 'allow');
  t.equal(onConn(allowTo([], ['metrics']), conn(web, 9090)), 'deny', 'notPorts by name');
  t.equal(onConn(allowTo([], ['web']), conn(web, 8080)), 'deny', 'notPorts by Service port name');
  t.equal(onConn(allowTo([8080, 9090], ['metrics']), conn(web, 9090)), 'deny', 'ports and notPorts are ANDed');
  t.equal(onConn(allowTo([5432]), conn(web, 5432)), 'allow', 'an unnamed port in no Service');
});

t.test('from and to entries: any entry matches; rule parts are ANDed', async (t) => {
  const ps = [
    access('shop/p', 'ALLOW', [
      rule({
        from: [from({ namespaces: ['a'] }), from({ identities: [spiffe('b', 'x')] })],
        to: [to({ ports: [8080] }), to({ ports: ['metrics'] })],
      }),
    ]),
  ];
  t.equal(onConn(ps, conn(web, 8080, { principal: 'a/y' })), 'allow');
  t.equal(onConn(ps, conn(web, 9090, { principal: 'b/x' })), 'allow');
  t.equal(onConn(ps, conn(web, 9090, { principal: 'b/y' })), 'deny', 'no from entry');
  t.equal(onConn(ps, conn(web, 5432, { principal: 'a/y' })), 'deny', 'no to entry');
});

t.test('L7 fields on an HTTP port, and their negations', async (t) => {
  const a = conn(web, HTTP, { principal: 'shop/frontend' });
  const allowTo = (p: Parameters<typeof to>[0]) => [access('shop/l7', 'ALLOW', [rule({ to: [to(p)] })])];
  const cases: [string, Parameters<typeof to>[0], RequestAttrs, 'allow' | 'deny'][] = [
    ['method listed', { methods: ['GET', 'HEAD'] }, req('GET', '/'), 'allow'],
    ['method not listed', { methods: ['GET', 'HEAD'] }, req('POST', '/'), 'deny'],
    ['notMethods listed', { notMethods: ['DELETE'] }, req('DELETE', '/'), 'deny'],
    ['notMethods other', { notMethods: ['DELETE'] }, req('GET', '/'), 'allow'],
    ['path exact', { paths: ['/healthz'] }, req('GET', '/healthz'), 'allow'],
    ['path exact, longer', { paths: ['/healthz'] }, req('GET', '/healthz/x'), 'deny'],
    ['path prefix, the prefix itself', { paths: ['/api/*'] }, req('GET', '/api/'), 'allow'],
    ['path prefix, below', { paths: ['/api/*'] }, req('GET', '/api/v1/orders'), 'allow'],
    ['path prefix, no slash', { paths: ['/api/*'] }, req('GET', '/api'), 'deny'],
    ['path suffix', { paths: ['*.css'] }, req('GET', '/s/site.css'), 'allow'],
    ['path suffix, other', { paths: ['*.css'] }, req('GET', '/s/site.js'), 'deny'],
    ['path any', { paths: ['*'] }, req('GET', '/x'), 'allow'],
    ['notPaths prefix', { notPaths: ['/admin/*'] }, req('GET', '/admin/users'), 'deny'],
    ['notPaths prefix, other', { notPaths: ['/admin/*'] }, req('GET', '/shop'), 'allow'],
    ['host exact', { hosts: ['shop.example'] }, req('GET', '/', { host: 'shop.example' }), 'allow'],
    ['host, pattern spelled in upper case', { hosts: ['Shop.Example'] }, req('GET', '/', { host: 'shop.example' }), 'allow'],
    ['host suffix', { hosts: ['*.example'] }, req('GET', '/', { host: 'api.example' }), 'allow'],
    ['host other', { hosts: ['*.example'] }, req('GET', '/', { host: 'api.example.org' }), 'deny'],
    ['notHosts', { notHosts: ['internal.*'] }, req('GET', '/', { host: 'internal.example' }), 'deny'],
    ['header present', { headers: [{ name: 'x-user', values: [] }] }, req('GET', '/', { headers: { 'x-user': '' } }), 'allow'],
    ['header absent', { headers: [{ name: 'x-user', values: [] }] }, req('GET', '/'), 'deny'],
    ['header exact', { headers: [{ name: 'x-env', values: ['prod'] }] }, req('GET', '/', { headers: { 'x-env': 'prod' } }), 'allow'],
    ['header exact, other', { headers: [{ name: 'x-env', values: ['prod'] }] }, req('GET', '/', { headers: { 'x-env': 'dev' } }), 'deny'],
    ['header prefix', { headers: [{ name: 'authorization', values: ['Bearer *'] }] }, req('GET', '/', { headers: { authorization: 'Bearer abc' } }), 'allow'],
    ['header suffix', { headers: [{ name: 'x-client', values: ['*-internal'] }] }, req('GET', '/', { headers: { 'x-client': 'batch-internal' } }), 'allow'],
    ['header any, empty value', { headers: [{ name: 'x-user', values: ['*'] }] }, req('GET', '/', { headers: { 'x-user': '' } }), 'deny'],
    ['headers: all must match (one of two present)', { headers: [{ name: 'x-env', values: ['prod'] }, { name: 'x-team', values: ['blue'] }] }, req('GET', '/', { headers: { 'x-env': 'prod' } }), 'deny'],
    ['headers: all must match (both present)', { headers: [{ name: 'x-env', values: ['prod'] }, { name: 'x-team', values: ['blue'] }] }, req('GET', '/', { headers: { 'x-env': 'prod', 'x-team': 'blue' } }), 'allow'],
    ['header name in upper case in the policy', { headers: [{ name: 'X-Env', values: ['prod'] }] }, req('GET', '/', { headers: { 'x-env': 'prod' } }), 'allow'],
    ['notHeaders present', { notHeaders: [{ name: 'x-debug', values: [] }] }, req('GET', '/', { headers: { 'x-debug': '1' } }), 'deny'],
    ['notHeaders absent', { notHeaders: [{ name: 'x-debug', values: [] }] }, req('GET', '/'), 'allow'],
    ['notHeaders value', { notHeaders: [{ name: 'x-env', values: ['dev'] }] }, req('GET', '/', { headers: { 'x-env': 'dev' } }), 'deny'],
    ['notHeaders other value', { notHeaders: [{ name: 'x-env', values: ['dev'] }] }, req('GET', '/', { headers: { 'x-env': 'prod' } }), 'allow'],
    ['fields ANDed', { methods: ['GET'], paths: ['/api/*'] }, req('POST', '/api/x'), 'deny'],
    ['fields ANDed, all match', { methods: ['GET'], paths: ['/api/*'], hosts: ['shop.example'] }, req('GET', '/api/x', { host: 'shop.example' }), 'allow'],
  ];
  for (const [name, target, r, want] of cases) t.equal(onReq(allowTo(target), a, r), want, name);
});

t.test('when conditions', async (t) => {
  const allowWhen = (...c: ReturnType<typeof when>[]) => [access('shop/when', 'ALLOW', [rule({ when: c })])];
  const mtls = (o: { ip?: string; destinationIp?: string; port?: number } = {}) => conn(web, o.port ?? TCP, { principal: 'shop/frontend', ...o });
  const cases: [string, ReturnType<typeof when>[], ConnectionAttrs, 'allow' | 'deny'][] = [
    ['source.ip CIDR', [when('source.ip', ['10.2.0.0/16'])], mtls({ ip: '10.2.3.4' }), 'allow'],
    ['source.ip CIDR, outside', [when('source.ip', ['10.2.0.0/16'])], mtls({ ip: '10.3.0.1' }), 'deny'],
    ['source.ip address', [when('source.ip', ['10.2.3.4'])], mtls({ ip: '10.2.3.4' }), 'allow'],
    ['source.ip IPv6', [when('source.ip', ['fd00::/8'])], mtls({ ip: 'fd12::1' }), 'allow'],
    ['source.ip notValues', [when('source.ip', [], ['10.2.0.0/16'])], mtls({ ip: '10.2.3.4' }), 'deny'],
    ['source.principal', [when('source.principal', [spiffe('shop', 'frontend')])], mtls(), 'allow'],
    ['source.principal, plaintext', [when('source.principal', ['*'])], conn(web, TCP), 'deny'],
    ['source.principal notValues, plaintext', [when('source.principal', [], ['*'])], conn(web, TCP), 'allow'],
    ['source.namespace', [when('source.namespace', ['shop'])], mtls(), 'allow'],
    ['source.namespace, other', [when('source.namespace', ['data'])], mtls(), 'deny'],
    ['source.namespace notValues', [when('source.namespace', [], ['shop'])], mtls(), 'deny'],
    ['destination.ip, any of the workload', [when('destination.ip', ['fd00:1::/64'])], mtls(), 'allow'],
    ['destination.ip, the connected address', [when('destination.ip', ['fd00:1::/64'])], mtls({ destinationIp: '10.1.0.5' }), 'deny'],
    ['destination.ip notValues', [when('destination.ip', [], ['10.1.0.5'])], mtls({ destinationIp: '10.1.0.5' }), 'deny'],
    ['destination.port', [when('destination.port', ['9090', '80'])], mtls(), 'allow'],
    ['destination.port, other', [when('destination.port', ['80'])], mtls(), 'deny'],
    ['destination.port notValues', [when('destination.port', [], ['9090'])], mtls(), 'deny'],
    ['destination.port, not a number', [when('destination.port', ['metrics'])], mtls(), 'deny'],
    ['all conditions must hold', [when('source.namespace', ['shop']), when('destination.port', ['80'])], mtls(), 'deny'],
    ['values and notValues both', [when('source.ip', ['10.0.0.0/8'], ['10.9.0.0/16'])], mtls({ ip: '10.9.0.1' }), 'deny'],
  ];
  for (const [name, conds, attrs, want] of cases) t.equal(onConn(allowWhen(...conds), attrs), want, name);

  const a = conn(web, HTTP, { principal: 'shop/frontend' });
  const l7: [string, ReturnType<typeof when>, RequestAttrs, 'allow' | 'deny'][] = [
    ['request.method', when('request.method', ['GET']), req('GET', '/'), 'allow'],
    ['request.method, other', when('request.method', ['GET']), req('PUT', '/'), 'deny'],
    ['request.path prefix', when('request.path', ['/api/*']), req('GET', '/api/x'), 'allow'],
    ['request.path notValues', when('request.path', [], ['/admin/*']), req('GET', '/admin/x'), 'deny'],
    ['request.host', when('request.host', ['*.Example']), req('GET', '/', { host: 'shop.example' }), 'allow'],
    ['request.headers', when('request.headers[x-tenant]', ['acme']), req('GET', '/', { headers: { 'x-tenant': 'acme' } }), 'allow'],
    ['request.headers, absent', when('request.headers[x-tenant]', ['acme']), req('GET', '/'), 'deny'],
    ['request.headers notValues, absent', when('request.headers[x-tenant]', [], ['acme']), req('GET', '/'), 'allow'],
    ['request.headers, name in upper case', when('request.headers[X-Tenant]', ['acme']), req('GET', '/', { headers: { 'x-tenant': 'acme' } }), 'allow'],
  ];
  for (const [name, c, r, want] of l7) t.equal(onReq(allowWhen(c), a, r), want, name);
});

t.test('L7 rules on a port that does not speak HTTP fail closed', async (t) => {
  const allowGet = access('shop/allow-get', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })], to: [to({ methods: ['GET'] })] })]);
  const d = final(index([allowGet]).evaluateConnection(conn(web, TCP, { principal: 'shop/frontend' })));
  t.equal(d.verdict, 'deny', 'ALLOW: the L7 rule never matches on TCP');
  t.equal(d.reason, 'no ALLOW rule matched (policies: shop/allow-get)');
  t.equal(onConn([allowGet], conn(web, HTTP, { principal: 'shop/frontend' })), 'inspect', 'on the HTTP port it is inspected');
  const allowWhen = access('shop/allow-when', 'ALLOW', [rule({ when: [when('request.method', ['GET'])] })]);
  t.equal(onConn([allowWhen], conn(web, TCP, { principal: 'shop/frontend' })), 'deny', 'ALLOW with an L7 condition, too');

  const denyPost = access('shop/deny-post', 'DENY', [rule({ from: [from({ namespaces: ['data'] })], to: [to({ methods: ['POST'] })] })]);
  t.equal(onConn([denyPost], conn(web, TCP, { principal: 'data/x' })), 'deny', 'DENY: the L4 parts decide');
  t.equal(onConn([denyPost], conn(web, TCP, { principal: 'shop/x' })), 'allow', 'DENY: L4 parts do not match');
  const denyPortPath = access('shop/deny-admin', 'DENY', [rule({ to: [to({ ports: [8080], paths: ['/admin/*'] })] })]);
  t.equal(onConn([denyPortPath], conn(web, TCP)), 'allow', 'DENY: the port part still has to match');
  const denyWhen = access('shop/deny-when', 'DENY', [rule({ when: [when('source.namespace', ['data']), when('request.path', ['/x'])] })]);
  t.equal(onConn([denyWhen], conn(web, TCP, { principal: 'data/x' })), 'deny', 'DENY: request conditions count as matching');
  t.equal(onConn([denyWhen], conn(web, TCP, { principal: 'shop/x' })), 'allow');

  const auditGet = access('shop/audit-get', 'AUDIT', [rule({ to: [to({ methods: ['GET'] })] })]);
  t.same(final(index([auditGet]).evaluateConnection(conn(web, TCP))).audits, [{ policy: 'shop/audit-get', rule: 'rules[0]' }], 'AUDIT: recorded on L4 parts');
});

t.test('inspect only when a rule that still matters needs the request', async (t) => {
  const front = { principal: 'shop/frontend' };
  const l4Allow = access('shop/l4', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })] })]);
  t.equal(onConn([l4Allow], conn(web, HTTP, front)), 'allow', 'L4-only rules on an HTTP port decide at once');

  const l7Allow = access('shop/l7', 'ALLOW', [rule({ from: [from({ namespaces: ['shop'] })], to: [to({ paths: ['/api/*'] })] })]);
  const inspect = index([l7Allow]).evaluateConnection(conn(web, HTTP, front));
  t.equal(inspect.verdict, 'inspect');
  t.match(inspect.reason, /port 8080 speaks http: rules of shop\/l7 need each request/);
  t.equal(onConn([l7Allow], conn(web, HTTP, { principal: 'data/x' })), 'deny', 'no ALLOW rule can match this source: denied at once');

  t.equal(onConn([l4Allow, l7Allow], conn(web, HTTP, front)), 'allow', 'an L4 ALLOW match settles it when nothing can deny');
  const l7Deny = access('shop/no-admin', 'DENY', [rule({ from: [from({ namespaces: ['data'] })], to: [to({ paths: ['/admin/*'] })] })]);
  t.equal(onConn([l7Deny], conn(web, HTTP, front)), 'allow', 'a DENY rule whose L4 parts miss needs no inspection');
  t.equal(onConn([l7Deny], conn(web, HTTP, { principal: 'data/x' })), 'inspect', 'a DENY rule whose L4 parts match does');
  t.equal(onConn([l7Deny, l4Allow], conn(web, HTTP, { principal: 'data/x' })), 'deny', 'ALLOW cannot match: denied at once even with a pending DENY');
  const l7PortMiss = access('shop/other-port', 'ALLOW', [rule({ to: [to({ ports: [7000], paths: ['/x'] })] }), rule({ from: [from({ namespaces: ['shop'] })] })]);
  t.equal(onConn([l7PortMiss], conn(web, HTTP, front)), 'allow', 'an L7 rule for another port is not pending');
  const l4Deny = access('shop/deny-data', 'DENY', [rule({ from: [from({ namespaces: ['data'] })] })]);
  t.equal(onConn([l4Deny, l7Allow], conn(web, HTTP, { principal: 'data/x' })), 'deny', 'an L4 DENY match denies at connection time');
  const l7Audit = access('shop/audit-admin', 'AUDIT', [rule({ to: [to({ paths: ['/admin/*'] })] })]);
  t.equal(onConn([l7Audit], conn(web, HTTP, front)), 'inspect', 'an L7 AUDIT rule needs the requests to be recorded');
});

t.test('requests on an inspected connection', async (t) => {
  const ps = [
    access('shop/allow-api', 'ALLOW', [rule({ name: 'api', from: [from({ namespaces: ['shop'] })], to: [to({ paths: ['/api/*'] })] })]),
    access('shop/deny-delete', 'DENY', [rule({ name: 'no-delete', to: [to({ methods: ['DELETE'] })] })]),
    access('shop/audit-orders', 'AUDIT', [rule({ name: 'orders', to: [to({ paths: ['/api/orders*'] })] }), rule({ name: 'all' })]),
  ];
  const d = index(ps).evaluateConnection(conn(web, HTTP, { principal: 'shop/frontend' }));
  if (d.verdict !== 'inspect') throw new Error('expected inspect');
  t.same(d.audits, [{ policy: 'shop/audit-orders', rule: 'all' }], 'the L4 audit is known at connection time');
  t.same(d.requests.evaluate(req('GET', '/api/items')), {
    verdict: 'allow',
    policy: 'shop/allow-api',
    rule: 'api',
    reason: 'allowed by ALLOW policy shop/allow-api rule api',
    audits: [{ policy: 'shop/audit-orders', rule: 'all' }],
  });
  const orders = d.requests.evaluate(req('GET', '/api/orders/7'));
  t.same(orders.audits, [
    { policy: 'shop/audit-orders', rule: 'all' },
    { policy: 'shop/audit-orders', rule: 'orders' },
  ]);
  t.same(d.requests.evaluate(req('GET', '/api/items')).audits.length, 1, 'one request’s audits do not leak into the next');
  const del = d.requests.evaluate(req('DELETE', '/api/items/1'));
  t.equal(del.verdict, 'deny');
  t.equal(del.reason, 'denied by DENY policy shop/deny-delete rule no-delete');
  const other = d.requests.evaluate(req('GET', '/static/x'));
  t.equal(other.verdict, 'deny');
  t.equal(other.reason, 'no ALLOW rule matched (policies: shop/allow-api)');
});

t.test('an ALLOW rule settled at L4 still yields to a DENY rule pending on the request', async (t) => {
  const ps = [access('shop/allow', 'ALLOW', [rule()]), access('shop/deny-admin', 'DENY', [rule({ to: [to({ paths: ['/admin/*'] })] })])];
  const d = index(ps).evaluateConnection(conn(web, HTTP));
  if (d.verdict !== 'inspect') throw new Error('expected inspect');
  t.equal(d.requests.evaluate(req('GET', '/')).verdict, 'allow');
  t.equal(d.requests.evaluate(req('GET', '/admin/')).verdict, 'deny');
  t.equal(index(ps).evaluateRequest(conn(web, HTTP), req('GET', '/admin/x')).verdict, 'deny', 'evaluateRequest agrees');
  t.equal(index(ps).evaluateRequest(conn(web, TCP), req('GET', '/admin/x')).verdict, 'deny', 'on TCP the DENY rule applies on its L4 parts');
});
