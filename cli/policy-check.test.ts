// `weft policy check`'s pure part on hand-made Kubernetes objects shaped as the API returns them:
// the real compile step (api/policy/compile.ts), the real workload computation and the real agent
// evaluator decide; these tests prove that the check follows the destination agent's path (mTLS,
// same node, plaintext, not captured) and explains the decision. The API reads are covered end to
// end by tests/policy.test.ts on a real playground.
import t from 'tap';
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { AccessPolicy, AccessPolicySpec, MeshTLSPolicy, MeshTLSPolicySpec } from '../api/policy/types.gen.ts';
import {
  EXIT,
  PolicyCheckError,
  chooseKubeconfig,
  exitCodeOf,
  explainPolicyCheck,
  formatPolicyCheck,
  normalizeHost,
  parseCheckArgs,
  type CheckQuestion,
  type ClusterObjects,
  type MeshSettings,
  type PolicyCheck,
} from './policy-check.ts';

const MESHED = { 'weft.dev/mesh': 'enabled' };

function ns(name: string, labels: Record<string, string> = {}): V1Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } };
}

interface PodSpec {
  node: string;
  ip: string;
  sa?: string;
  labels?: Record<string, string>;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  hostNetwork?: boolean;
  annotations?: Record<string, string>;
  /** A tcpSocket readiness probe on this port. */
  probePort?: number;
}

function pod(key: string, o: PodSpec): V1Pod {
  const [namespace, name] = key.split('/') as [string, string];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name, uid: `uid-${name}`, labels: o.labels ?? { app: name }, ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      nodeName: o.node,
      serviceAccountName: o.sa ?? name,
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: [
        {
          name: 'main',
          image: 'example',
          ...(o.ports ? { ports: o.ports } : {}),
          ...(o.probePort ? { readinessProbe: { tcpSocket: { port: o.probePort } } } : {}),
        },
      ],
    },
    status: { phase: 'Running', podIP: o.ip, podIPs: [{ ip: o.ip }] },
  };
}

const pods: V1Pod[] = [
  pod('shop/server', { node: 'node-1', ip: '10.200.1.10', ports: [{ name: 'http', containerPort: 8080 }, { name: 'echo', containerPort: 9000 }], probePort: 9000 }),
  pod('shop/local', { node: 'node-1', ip: '10.200.1.11', ports: [{ name: 'metrics', containerPort: 9090 }] }),
  pod('shop/bare', { node: 'node-1', ip: '10.200.1.12' }),
  pod('web/client', { node: 'node-2', ip: '10.200.2.10' }),
  pod('web/other', { node: 'node-2', ip: '10.200.2.11' }),
  pod('legacy/plain', { node: 'node-2', ip: '10.200.2.20' }),
  pod('legacy/target', { node: 'node-2', ip: '10.200.2.21', ports: [{ containerPort: 80 }] }),
  pod('kube-system/probe-1', { node: 'node-1', ip: '10.200.0.1', hostNetwork: true }),
  pod('kube-system/probe-2', { node: 'node-2', ip: '10.200.0.2', hostNetwork: true }),
];

const namespaces = [ns('shop', MESHED), ns('web', { ...MESHED, team: 'web' }), ns('legacy'), ns('kube-system'), ns('weft-system')];

const services: V1Service[] = [
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'shop', name: 'server' },
    spec: {
      clusterIP: '10.96.0.20',
      selector: { app: 'server' },
      ports: [
        { name: 'web', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' },
        { name: 'tcp-echo', port: 9000, targetPort: 9000, protocol: 'TCP' },
      ],
    },
  },
];

const slices: V1EndpointSlice[] = [
  {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'shop', name: 'server-abcde', labels: { 'kubernetes.io/service-name': 'server' } },
    addressType: 'IPv4',
    ports: [
      { name: 'web', port: 8080, protocol: 'TCP' },
      { name: 'tcp-echo', port: 9000, protocol: 'TCP' },
    ],
    endpoints: [{ addresses: ['10.200.1.10'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'shop', name: 'server' } }],
  },
];

let created = 0;
function meta(key: string) {
  const [namespace, name] = key.split('/') as [string, string];
  // As a list returns it: a string timestamp; each policy a second younger than the one before.
  return { namespace, name, generation: 1, uid: `uid-${name}`, creationTimestamp: new Date(Date.UTC(2025, 0, 1, 0, 0, created++)).toISOString() as unknown as Date };
}

function access(key: string, spec: AccessPolicySpec): AccessPolicy {
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: meta(key), spec };
}

function meshTLS(key: string, spec: MeshTLSPolicySpec): MeshTLSPolicy {
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'MeshTLSPolicy', metadata: meta(key), spec };
}

const SETTINGS: MeshSettings = { installNamespace: 'weft-system', trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' };

function check(
  o: { access?: AccessPolicy[]; mtls?: MeshTLSPolicy[]; from?: string; to?: string; port?: string; request?: Partial<CheckQuestion['request']>; settings?: Partial<MeshSettings> } = {},
): PolicyCheck {
  const objects: ClusterObjects = { pods, namespaces, services, endpointSlices: slices, accessPolicies: o.access ?? [], meshTLSPolicies: o.mtls ?? [] };
  const q: CheckQuestion = {
    source: o.from ?? 'web/client',
    destination: o.to ?? 'shop/server',
    ...(o.port !== undefined ? { port: o.port } : {}),
    request: { method: 'GET', path: '/', headers: [], ...o.request },
  };
  return explainPolicyCheck(objects, q, { ...SETTINGS, ...o.settings });
}

const allowClient = access('shop/allow-client', {
  selector: { matchLabels: { app: 'server' } },
  rules: [{ name: 'from-client', from: [{ identities: ['cluster.local/ns/web/sa/client'] }] }],
});

t.test('no policy: allowed by default, through an mTLS tunnel, on the first container port', async (t) => {
  const c = check();
  t.equal(c.decision, 'ALLOW');
  t.equal(c.by, 'default: no policy applies');
  t.equal(c.reason, 'allowed: no policy applies');
  t.equal(exitCodeOf(c), EXIT.allow);
  t.equal(c.path, 'mtls');
  t.match(c.pathDetail, /node-2 to node-1/);
  t.strictSame(c.from, { pod: 'web/client', ip: '10.200.2.10', node: 'node-2', meshed: true, meshReason: 'namespace-label', identity: 'spiffe://cluster.local/ns/web/sa/client' });
  t.equal(c.to.port, 8080, 'the first container port');
  t.equal(c.to.appProtocol, 'http', "the Service port's appProtocol");
  t.equal(c.to.http, true);
  t.strictSame(c.to.portNames, ['http', 'web'], 'the container port name and the Service port name');
  t.strictSame(c.mtls, { mode: 'PERMISSIVE', setBy: 'the mesh default (--mtls-mode PERMISSIVE)' });
  t.equal(c.request?.evaluated, false, 'no rule needs the request');
  t.match(c.request?.detail, /no rule that applies needs the request/);
  t.strictSame(c.policies, []);
  t.strictSame(c.ignored, []);
});

t.test('identity ALLOW: the named identity is allowed by the rule, any other is denied', async (t) => {
  const ok = check({ access: [allowClient] });
  t.equal(ok.decision, 'ALLOW');
  t.equal(ok.by, 'shop/allow-client, rule from-client');
  t.equal(ok.policy, 'shop/allow-client');
  t.equal(ok.rule, 'from-client');
  t.match(ok.reason, /ALLOW policy shop\/allow-client rule from-client/);
  t.match(ok.policies, [{ kind: 'AccessPolicy', key: 'shop/allow-client', action: 'ALLOW', scope: 'workload' }]);

  const no = check({ access: [allowClient], from: 'web/other' });
  t.equal(no.decision, 'DENY');
  t.equal(no.by, 'no ALLOW rule matched');
  t.equal(no.policy, undefined);
  t.match(no.reason, /no ALLOW rule matched \(policies: shop\/allow-client\)/);
  t.equal(exitCodeOf(no), EXIT.deny);

  const elsewhere = check({ access: [allowClient], to: 'shop/local' });
  t.equal(elsewhere.decision, 'ALLOW', 'a workload the selector does not pick is not governed');
  t.strictSame(elsewhere.policies, []);
  t.equal(elsewhere.path, 'mtls');
});

t.test('DENY wins over ALLOW', async (t) => {
  const denyWeb = access('shop/deny-web', { action: 'DENY', rules: [{ name: 'web-ns', from: [{ namespaces: ['web'] }] }] });
  const c = check({ access: [allowClient, denyWeb] });
  t.equal(c.decision, 'DENY');
  t.equal(c.by, 'shop/deny-web, rule web-ns');
  t.match(c.reason, /DENY policy shop\/deny-web rule web-ns/);
  t.strictSame(
    c.policies.map((p) => [p.key, p.action, p.scope]),
    [
      ['shop/allow-client', 'ALLOW', 'workload'],
      ['shop/deny-web', 'DENY', 'namespace'],
    ],
  );
  t.equal(check({ access: [allowClient, denyWeb], from: 'shop/local' }).decision, 'DENY', 'same-node: the ALLOW policy still requires a match');
});

t.test('a DENY-only policy that does not match leaves the default allow, and says so', async (t) => {
  const denyLegacy = access('shop/deny-legacy', { action: 'DENY', rules: [{ from: [{ namespaces: ['legacy'] }] }] });
  const c = check({ access: [denyLegacy] });
  t.equal(c.decision, 'ALLOW');
  t.equal(c.by, 'default: no DENY rule matched and no ALLOW policy applies');
});

t.test('same node: the agent delivers it with the source identity', async (t) => {
  const c = check({ from: 'shop/local', access: [access('shop/only-local', { rules: [{ from: [{ identities: ['*/sa/local'] }] }] })] });
  t.equal(c.path, 'same-node');
  t.match(c.pathDetail, /both pods run on node-1/);
  t.equal(c.decision, 'ALLOW');
  t.equal(c.by, 'shop/only-local, rule rules[0]', 'an unnamed rule is named by its index');
});

t.test('plaintext: STRICT refuses before access policy, PERMISSIVE goes on without an identity', async (t) => {
  const strict = meshTLS('shop/strict', { mode: 'STRICT' });
  const refused = check({ from: 'legacy/plain', mtls: [strict] });
  t.equal(refused.path, 'plaintext');
  t.equal(refused.decision, 'DENY');
  t.equal(refused.reason, 'plaintext refused: mTLS mode is STRICT');
  t.equal(refused.by, 'MeshTLSPolicy shop/strict');
  t.equal(refused.policy, 'shop/strict');
  t.strictSame(refused.mtls, { mode: 'STRICT', setBy: 'MeshTLSPolicy shop/strict', policy: 'shop/strict' });
  t.equal(refused.request, undefined, 'the connection never reaches access policy');
  t.match(refused.policies, [{ kind: 'MeshTLSPolicy', key: 'shop/strict', action: 'STRICT', inForce: true }]);

  t.equal(check({ mtls: [strict] }).decision, 'ALLOW', 'a meshed client is unaffected by STRICT');

  const meshDefault = check({ from: 'legacy/plain', settings: { mtlsMode: 'STRICT' } });
  t.equal(meshDefault.decision, 'DENY');
  t.equal(meshDefault.by, 'the mesh default (--mtls-mode STRICT)');
  t.ok(meshDefault.notes.some((n) => n.includes("controller's --mtls-mode")), 'says the CLI cannot read the mesh default');

  const permissive = check({ from: 'legacy/plain', access: [allowClient] });
  t.equal(permissive.path, 'plaintext');
  t.equal(permissive.mtls?.mode, 'PERMISSIVE');
  t.equal(permissive.decision, 'DENY', 'an identity rule never matches plaintext');
  t.equal(permissive.by, 'no ALLOW rule matched');

  const byAddress = access('shop/allow-legacy-net', { rules: [{ name: 'legacy-net', from: [{ ipBlocks: [{ cidr: '10.200.2.0/24', except: ['10.200.2.10/32'] }] }] }] });
  const allowed = check({ from: 'legacy/plain', access: [allowClient, byAddress] });
  t.equal(allowed.decision, 'ALLOW', "an ipBlocks rule matches the source pod's address");
  t.equal(allowed.by, 'shop/allow-legacy-net, rule legacy-net');
});

t.test('the most specific MeshTLSPolicy decides, and a per-port override within it', async (t) => {
  const meshStrict = meshTLS('weft-system/mesh-strict', { mode: 'STRICT' });
  const workloadPermissive = meshTLS('shop/server-permissive', { selector: { matchLabels: { app: 'server' } }, mode: 'PERMISSIVE', ports: [{ port: 9000, mode: 'STRICT' }] });
  const c = check({ from: 'legacy/plain', mtls: [meshStrict, workloadPermissive] });
  t.equal(c.decision, 'ALLOW');
  t.strictSame(c.mtls, { mode: 'PERMISSIVE', setBy: 'MeshTLSPolicy shop/server-permissive', policy: 'shop/server-permissive' });
  t.strictSame(
    c.policies.map((p) => [p.key, p.action, p.inForce]),
    [
      ['shop/server-permissive', 'PERMISSIVE (ports 9000: STRICT)', true],
      ['weft-system/mesh-strict', 'STRICT', false],
    ],
  );
  const echo = check({ from: 'legacy/plain', mtls: [meshStrict, workloadPermissive], port: 'echo' });
  t.equal(echo.to.port, 9000, 'a port by its container port name');
  t.equal(echo.decision, 'DENY', 'the per-port override is STRICT');
  t.equal(check({ from: 'legacy/plain', mtls: [meshStrict], to: 'shop/local' }).by, 'MeshTLSPolicy weft-system/mesh-strict');
});

t.test('L7: on an HTTP port the request is evaluated, normalized as the agent does', async (t) => {
  const l7 = access('shop/public-reads', {
    rules: [
      { name: 'public-get', to: [{ methods: ['get'], paths: ['/public/*'] }] },
      { name: 'admin-with-token', to: [{ paths: ['/admin'], headers: [{ name: 'X-Token', values: ['s3cr*'] }] }] },
    ],
  });
  const ok = check({ access: [l7], request: { path: '/public/index.html?x=1' } });
  t.equal(ok.decision, 'ALLOW');
  t.equal(ok.by, 'shop/public-reads, rule public-get');
  t.equal(ok.request?.evaluated, true);
  t.equal(ok.request?.path, '/public/index.html', 'the query is not part of the path policy sees');
  t.match(ok.request?.detail, /port 8080 is HTTP \(appProtocol http\).*the request was evaluated/);
  t.equal(ok.request?.host, '10.200.1.10', "the Host defaults to the destination's address");

  const post = check({ access: [l7], request: { method: 'post', path: '/public/index.html' } });
  t.equal(post.decision, 'DENY');
  t.equal(post.request?.method, 'POST');
  t.equal(post.by, 'no ALLOW rule matched');

  const sneaky = check({ access: [l7], request: { path: '//public/../admin' } });
  t.equal(sneaky.request?.path, '/admin', 'dot segments and double slashes resolved before policy');
  t.equal(sneaky.decision, 'DENY', 'no token');
  const token = check({ access: [l7], request: { path: '/admin', headers: [['X-Token', 's3cret']] } });
  t.equal(token.decision, 'ALLOW');
  t.equal(token.by, 'shop/public-reads, rule admin-with-token');
  t.strictSame(token.request?.headers, { 'x-token': 's3cret' });

  const tcp = check({ access: [l7], port: '9000', request: { path: '/public/x' } });
  t.equal(tcp.to.appProtocol, 'tcp');
  t.equal(tcp.to.http, false);
  t.equal(tcp.decision, 'DENY', 'an ALLOW rule with HTTP fields never matches a non-HTTP port');
  t.equal(tcp.request?.evaluated, false);
  t.match(tcp.request?.detail, /speaks tcp, not HTTP/);

  t.throws(() => check({ access: [l7], request: { path: '/a%2Fb' } }), { code: 'BAD_REQUEST' }, 'a path the agent refuses is an error, not a verdict');
});

t.test('L7 DENY with a header condition, host matching and AUDIT records', async (t) => {
  const denyDebug = access('shop/deny-debug', { action: 'DENY', rules: [{ name: 'debug-header', when: [{ key: 'request.headers[x-debug]', values: ['1'] }] }] });
  const audit = access('shop/audit-writes', { action: 'AUDIT', rules: [{ name: 'writes', to: [{ methods: ['POST', 'PUT'] }] }, { name: 'everything' }] });
  const hosts = access('shop/by-host', { rules: [{ name: 'shop-host', to: [{ hosts: ['shop.example.com'] }] }] });
  const all = [denyDebug, audit, hosts];

  const viaHost = check({ access: all, request: { method: 'POST', host: 'Shop.Example.com.:8080' } });
  t.equal(viaHost.decision, 'ALLOW');
  t.equal(viaHost.request?.host, 'shop.example.com');
  t.strictSame(viaHost.audit.map((a) => a.rule).sort(), ['everything', 'writes'], 'both AUDIT rules that matched are listed');

  const hostHeader = check({ access: all, request: { headers: [['Host', 'shop.example.com']] } });
  t.equal(hostHeader.decision, 'ALLOW', 'a Host header stands for --host');
  t.strictSame(hostHeader.audit, [{ policy: 'shop/audit-writes', rule: 'everything' }]);

  const debug = check({ access: all, request: { host: 'shop.example.com', headers: [['X-Debug', '1']] } });
  t.equal(debug.decision, 'DENY');
  t.equal(debug.by, 'shop/deny-debug, rule debug-header');

  t.equal(check({ access: all, request: { host: 'other.example.com' } }).decision, 'DENY');
  const text = formatPolicyCheck(viaHost);
  t.match(text, /^AUDIT {5}shop\/audit-writes, rule /m);
});

t.test('a namespaceSelector is resolved against the namespaces, as the controller does', async (t) => {
  const byTeam = access('shop/team-web', { rules: [{ name: 'team', from: [{ namespaceSelector: { matchLabels: { team: 'web' } } }] }] });
  t.equal(check({ access: [byTeam] }).decision, 'ALLOW');
  t.equal(check({ access: [byTeam], from: 'shop/local' }).decision, 'DENY');
});

t.test('a policy that does not compile is ignored, with its problems, and the output says why', async (t) => {
  const broken = access('shop/broken', {
    action: 'DENY',
    rules: [{ name: 'bad-path', to: [{ paths: ['/a*b'] }] }],
  });
  const badMode = { ...meshTLS('shop/bad-mode', { mode: 'STRICT' }), spec: { mode: 'MAYBE' } } as unknown as MeshTLSPolicy;
  const unrelated = access('other/broken', { action: 'DENY', rules: [{ to: [{ paths: ['/x*y'] }] }] });
  const c = check({ access: [broken, unrelated, allowClient], mtls: [badMode], from: 'web/client' });
  t.equal(c.decision, 'ALLOW', 'the broken DENY policy does not count');
  t.strictSame(c.ignored, [
    { kind: 'MeshTLSPolicy', key: 'shop/bad-mode', generation: 1, problems: ['spec.mode: "MAYBE" is not one of STRICT, PERMISSIVE'] },
    { kind: 'AccessPolicy', key: 'shop/broken', generation: 1, problems: ['spec.rules[0].to[0].paths[0]: "*" may only be the first or last character'] },
  ]);
  t.ok(c.notes.some((n) => n.includes('keeps the last generation')), 'says the controller may still enforce an older generation');
  const text = formatPolicyCheck(c);
  t.match(text, /^IGNORED {3}AccessPolicy shop\/broken \(generation 1\) does not compile:\n {12}spec\.rules\[0\]/m);
  t.notMatch(text, /other\/broken/, 'a policy that cannot apply to the destination is not listed');
});

t.test('a destination outside the mesh: no Weft policy applies', async (t) => {
  const c = check({ to: 'legacy/target', access: [access('legacy/deny-all', { action: 'DENY', rules: [{}] })] });
  t.equal(c.decision, 'ALLOW');
  t.equal(c.path, 'not-captured');
  t.equal(c.by, 'not in the mesh: no Weft policy applies');
  t.equal(c.to.meshReason, 'not-opted-in');
  t.equal(c.to.port, 80);
  t.equal(c.mtls, undefined);
  t.equal(c.policies.length, 1);
  t.ok(c.notes.some((n) => n.includes('cannot protect it')));
  t.equal(check({ to: 'kube-system/probe-1' }).to.meshReason, 'host-network');
});

t.test("the node's traffic is plaintext except the kubelet's probe ports; self traffic is not captured", async (t) => {
  const strict = { settings: { mtlsMode: 'STRICT' as const } };
  const node = check({ from: 'kube-system/probe-1', port: '8080', ...strict });
  t.equal(node.path, 'plaintext', 'the node reaching a meshed pod on its own node is captured');
  t.equal(node.from.ip, '10.200.0.1');
  t.equal(node.decision, 'DENY', 'and STRICT refuses it');
  const probe = check({ from: 'kube-system/probe-1', port: '9000', ...strict });
  t.equal(probe.path, 'not-captured', "the probe's port is exempt");
  t.equal(probe.decision, 'ALLOW', 'kubelet probes reach the pod even under STRICT');
  const trusted = check({ from: 'kube-system/probe-1', port: '8080', settings: { mtlsMode: 'STRICT', captureNodeTraffic: false } });
  t.equal(trusted.path, 'not-captured', 'agent.captureNodeTraffic=false trusts the node');
  t.equal(trusted.decision, 'ALLOW');
  const remote = check({ from: 'kube-system/probe-2', ...strict });
  t.equal(remote.path, 'plaintext');
  t.equal(remote.from.ip, '10.200.0.2');
  t.equal(remote.decision, 'DENY');
  const self = check({ from: 'shop/server', access: [allowClient] });
  t.equal(self.path, 'not-captured');
  t.equal(self.decision, 'ALLOW');
});

t.test('errors carry a code: unknown pod, malformed reference, no port', async (t) => {
  t.throws(() => check({ from: 'web/nobody' }), { code: 'UNKNOWN_POD', message: 'there is no pod "nobody" in namespace "web"' });
  t.throws(() => check({ to: 'server' }), { code: 'USAGE' });
  t.throws(() => check({ to: 'shop/bare' }), { code: 'NO_PORT', message: /declares no TCP container port: say which port with --port/ });
  t.throws(() => check({ port: 'grpc' }), { code: 'NO_PORT', message: /no TCP container port named "grpc"/ });
  t.throws(() => check({ port: '70000' }), { code: 'USAGE' });
  const explicit = check({ to: 'shop/bare', port: '7000' });
  t.equal(explicit.to.port, 7000, 'any port can be asked about');
  t.equal(explicit.to.appProtocol, 'tcp');
  t.ok(new PolicyCheckError('API', 'x') instanceof Error);
});

t.test('the text output: one labelled line per part', async (t) => {
  const strict = meshTLS('shop/strict', { mode: 'STRICT' });
  const text = formatPolicyCheck(check({ access: [allowClient], mtls: [strict] }));
  t.match(text, /^FROM {6}web\/client \(10\.200\.2\.10 on node-2; meshed as spiffe:\/\/cluster\.local\/ns\/web\/sa\/client\)$/m);
  t.match(text, /^TO {8}shop\/server \(10\.200\.1\.10 on node-1; meshed as .*\), port 8080 \(http, HTTP; names http, web\)$/m);
  t.match(text, /^PATH {6}mtls: HBONE tunnel/m);
  t.match(text, /^MTLS {6}STRICT, set by MeshTLSPolicy shop\/strict$/m);
  t.match(text, /^REQUEST {3}GET \/ \(host 10\.200\.1\.10\)$/m);
  t.match(text, /^DECISION {2}ALLOW$/m);
  t.match(text, /^BY {8}shop\/allow-client, rule from-client$/m);
  t.match(text, /^REASON {4}allowed by ALLOW policy shop\/allow-client rule from-client$/m);
  t.match(text, /^AUDIT {5}-$/m);
  t.match(text, /^POLICIES {2}AccessPolicy shop\/allow-client ALLOW \(workload, generation 1\)$/m);
  t.match(text, /^ {10}MeshTLSPolicy shop\/strict STRICT \(namespace, generation 1, sets the mode\)$/m);
  const plain = formatPolicyCheck(check({ from: 'legacy/plain', settings: { mtlsMode: 'STRICT' } }));
  t.match(plain, /^FROM {6}legacy\/plain \(10\.200\.2\.20 on node-2; not meshed: not-opted-in\)$/m);
  t.match(plain, /^DECISION {2}DENY$/m);
  t.match(plain, /^POLICIES {2}none selects the destination$/m);
  t.match(plain, /^NOTE {6}the mesh-wide mTLS mode/m);
});

t.test('-o json: the same explanation as one plain JSON object', async (t) => {
  const c = check({ from: 'legacy/plain', access: [allowClient], mtls: [meshTLS('shop/permissive', { mode: 'PERMISSIVE' })] });
  const json = JSON.parse(JSON.stringify(c)) as PolicyCheck;
  t.strictSame(json, c, 'nothing is lost (no class instances, no functions, no undefined values that matter)');
  t.match(json, {
    from: { pod: 'legacy/plain', meshed: false },
    to: { pod: 'shop/server', port: 8080, appProtocol: 'http', http: true },
    path: 'plaintext',
    mtls: { mode: 'PERMISSIVE', policy: 'shop/permissive' },
    request: { method: 'GET', path: '/', evaluated: false },
    decision: 'DENY',
    by: 'no ALLOW rule matched',
    audit: [],
  });
});

t.test('arguments: defaults, repeated headers, and usage errors', async (t) => {
  const a = parseCheckArgs(['web/client', 'shop/server']);
  t.strictSame(a, {
    question: { source: 'web/client', destination: 'shop/server', request: { method: 'GET', path: '/', headers: [] } },
    settings: { installNamespace: 'weft-system', trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE', captureNodeTraffic: true },
    output: 'text',
  });
  const b = parseCheckArgs([
    'web/client',
    'shop/server',
    '--port=http',
    '--method',
    'POST',
    '--path',
    '/x',
    '--host',
    'a.example',
    '--header',
    'X-A: 1',
    '--header',
    'x-b:two: parts',
    '-o',
    'json',
    '--kubeconfig',
    '/tmp/kc',
    '--name',
    'pg',
    '--namespace',
    'mesh',
    '--trust-domain',
    'example.org',
    '--mtls-mode',
    'strict',
  ]);
  t.strictSame(b.question, {
    source: 'web/client',
    destination: 'shop/server',
    port: 'http',
    request: { method: 'POST', path: '/x', host: 'a.example', headers: [['X-A', '1'], ['x-b', 'two: parts']] },
  });
  t.strictSame(b.settings, { installNamespace: 'mesh', trustDomain: 'example.org', mtlsMode: 'STRICT', captureNodeTraffic: true });
  t.equal(parseCheckArgs(['a/b', 'c/d', '--trust-node-traffic']).settings.captureNodeTraffic, false, '--trust-node-traffic mirrors agent.captureNodeTraffic=false');
  t.equal(b.output, 'json');
  t.equal(b.kubeconfig, '/tmp/kc');
  t.equal(b.playground, 'pg');
  for (const bad of [['web/client'], ['web/client', 'shop/server', 'x/y'], ['web/client', 'shop'], ['a/b', 'c/d', '--header', 'nocolon'], ['a/b', 'c/d', '-o', 'yaml'], ['a/b', 'c/d', '--mtls-mode', 'OFF'], ['a/b', 'c/d', '--bogus']]) {
    t.throws(() => parseCheckArgs(bad), { code: 'USAGE' }, bad.join(' '));
  }
  const repeated = check({ request: { headers: [['X-A', '1'], ['x-a', '2']] } });
  t.strictSame(repeated.request?.headers, { 'x-a': '1,2' }, 'repeated headers are joined as the agent joins them');
});

t.test('hosts are compared without port, case or trailing dot', async (t) => {
  t.equal(normalizeHost('Api.Example.COM.'), 'api.example.com');
  t.equal(normalizeHost('api.example.com:8443'), 'api.example.com');
  t.equal(normalizeHost('[fd00::1]:80'), 'fd00::1');
  t.equal(normalizeHost('fd00::1'), 'fd00::1');
});

t.test('which kubeconfig: --kubeconfig, --name, $KUBECONFIG, the running playground, ~/.kube/config', async (t) => {
  const running: Record<string, string> = { weft: '/run/weft/admin.kubeconfig', pg: '/run/pg/admin.kubeconfig' };
  const base = { defaultPlayground: 'weft', playgroundKubeconfig: async (n: string) => running[n], home: '/nonexistent-home' };
  t.strictSame(await chooseKubeconfig({ ...base, flag: '/a', playground: 'pg', env: '/b' }), { path: '/a', from: '--kubeconfig' });
  t.strictSame(await chooseKubeconfig({ ...base, playground: 'pg', env: '/b' }), { path: '/run/pg/admin.kubeconfig', from: 'playground "pg"' });
  await t.rejects(chooseKubeconfig({ ...base, playground: 'gone' }), { code: 'NO_CLUSTER', message: 'no playground named "gone" is running' });
  t.strictSame(await chooseKubeconfig({ ...base, env: '/b' }), { path: '/b', from: '$KUBECONFIG' });
  t.strictSame(await chooseKubeconfig(base), { path: '/run/weft/admin.kubeconfig', from: 'playground "weft"' });
  t.strictSame(await chooseKubeconfig({ ...base, defaultPlayground: 'none' }), { path: undefined, from: 'in-cluster configuration' });
  const home = t.testdir({ '.kube': { config: 'apiVersion: v1\n' } });
  t.strictSame(await chooseKubeconfig({ ...base, defaultPlayground: 'none', home }), { path: `${home}/.kube/config`, from: '~/.kube/config' });
});
