// compile.ts: what a policy object compiles to, and every way it can be refused, with the exact
// path and message the controller puts in the policy's status.
import t from 'tap';
import { compileAccessPolicy, compileMeshTLSPolicy } from './compile.ts';
import type { CompileContext } from './compile.ts';
import type { CompileResult, CompiledAccessPolicy, CompiledSource, CompiledTarget, PolicyProblem } from './model.ts';
import type { AccessPolicy, AccessPolicySpec, AccessRule, MeshTLSPolicy, MeshTLSPolicySpec } from './types.gen.ts';

const ctx: CompileContext = {
  installNamespace: 'weft-system',
  trustDomain: 'cluster.local',
  namespaces: [
    { name: 'shop', labels: { team: 'retail', env: 'prod' } },
    { name: 'billing', labels: { team: 'finance', env: 'prod' } },
    { name: 'dev', labels: { team: 'retail', env: 'dev' } },
    { name: 'weft-system', labels: {} },
  ],
};

const CREATED = '2025-03-01T10:00:00Z';

function ap(spec: unknown, namespace = 'shop', name = 'p'): AccessPolicy {
  return {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'AccessPolicy',
    // The API hands creationTimestamp over as a string, whatever the client's types say.
    metadata: { name, namespace, generation: 7, creationTimestamp: CREATED as unknown as Date },
    ...(spec === undefined ? {} : { spec: spec as AccessPolicySpec }),
  };
}

function mtp(spec: unknown, namespace = 'shop'): MeshTLSPolicy {
  return {
    apiVersion: 'weft.dev/v1alpha1',
    kind: 'MeshTLSPolicy',
    metadata: { name: 'm', namespace, generation: 2, creationTimestamp: new Date(CREATED) },
    spec: spec as MeshTLSPolicySpec,
  };
}

const oneRule = (r: unknown): AccessPolicy => ap({ rules: [r as AccessRule] });

function ok<T>(r: CompileResult<T>): { policy: T; warnings: PolicyProblem[] } {
  if (!r.ok) throw new Error(`expected to compile, got ${JSON.stringify(r.problems)}`);
  return r;
}

function problems<T>(r: CompileResult<T>): PolicyProblem[] {
  if (r.ok) throw new Error('expected problems, it compiled');
  return r.problems;
}

const emptySource: CompiledSource = { identities: [], notIdentities: [], namespaces: [], notNamespaces: [], ipBlocks: [], notIpBlocks: [] };
const emptyTarget: CompiledTarget = {
  ports: [],
  notPorts: [],
  methods: [],
  notMethods: [],
  paths: [],
  notPaths: [],
  hosts: [],
  notHosts: [],
  headers: [],
  notHeaders: [],
};

t.test('an empty spec (or none) is the namespace-wide ALLOW policy without rules', async (t) => {
  const expected: CompiledAccessPolicy = { key: 'shop/p', namespace: 'shop', name: 'p', generation: 7, scope: 'namespace', action: 'ALLOW', rules: [] };
  t.same(ok(compileAccessPolicy(ap({}), ctx)), { ok: true, policy: expected, warnings: [] });
  t.same(ok(compileAccessPolicy(ap(undefined), ctx)).policy, expected, 'no spec: the schema default {}');
});

t.test('everything is normalized into the model', async (t) => {
  const r = ok(
    compileAccessPolicy(
      ap({
        selector: { matchLabels: { app: 'cart' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
        action: 'DENY',
        rules: [
          {
            name: 'from-frontend',
            from: [
              {
                identities: ['cluster.local/ns/web/sa/frontend', 'spiffe://cluster.local/ns/web/sa/admin', '*/sa/probe', '*'],
                notIdentities: ['cluster.local/ns/web/*'],
                namespaces: ['shop'],
                notNamespaces: ['dev'],
                ipBlocks: [{ cidr: 'FD00:0:0:0:0:0:0:0/8', except: ['fd00:0:0:1::/64'] }],
                notIpBlocks: [{ cidr: '192.168.0.0/16' }],
              },
            ],
            to: [
              {
                ports: [8080, 'http'],
                notPorts: ['metrics'],
                methods: ['get', 'Post'],
                notMethods: ['DELETE'],
                paths: ['/api/*', '*.js', '/healthz', '*'],
                notPaths: ['/admin/*'],
                hosts: ['API.Example.com', '*.Example.com', 'example.*'],
                notHosts: ['Internal.example.com'],
                headers: [{ name: 'X-Tenant', values: ['a', 'b*'] }, { name: 'Authorization' }],
                notHeaders: [{ name: 'X-Debug' }],
              },
            ],
            when: [
              { key: 'request.headers[X-Canary]', values: ['1'] },
              { key: 'request.method', values: ['get'] },
              { key: 'request.host', notValues: ['Evil.example.com'] },
              { key: 'source.principal', values: ['cluster.local/ns/web/sa/frontend', '*/sa/probe'] },
              { key: 'destination.port', values: ['080', '8443'] },
              { key: 'source.ip', values: ['10.1.2.3', 'FD00::0001', '10.0.0.0/8'] },
              { key: 'source.namespace', values: ['shop', 'team-*'] },
              { key: 'request.path', values: ['/api/*'] },
            ],
          },
        ],
      }),
      ctx,
    ),
  );
  t.same(r.warnings, []);
  t.same(r.policy, {
    key: 'shop/p',
    namespace: 'shop',
    name: 'p',
    generation: 7,
    scope: 'workload',
    selector: { matchLabels: { app: 'cart' }, matchExpressions: [{ key: 'tier', operator: 'Exists', values: [] }] },
    action: 'DENY',
    rules: [
      {
        name: 'from-frontend',
        from: [
          {
            identities: ['spiffe://cluster.local/ns/web/sa/frontend', 'spiffe://cluster.local/ns/web/sa/admin', '*/sa/probe', '*'],
            notIdentities: ['spiffe://cluster.local/ns/web/*'],
            namespaces: ['shop'],
            notNamespaces: ['dev'],
            ipBlocks: [{ cidr: 'fd00::/8', except: ['fd00:0:0:1::/64'] }],
            notIpBlocks: [{ cidr: '192.168.0.0/16', except: [] }],
          },
        ],
        to: [
          {
            ports: [8080, 'http'],
            notPorts: ['metrics'],
            methods: ['GET', 'POST'],
            notMethods: ['DELETE'],
            paths: ['/api/*', '*.js', '/healthz', '*'],
            notPaths: ['/admin/*'],
            hosts: ['api.example.com', '*.example.com', 'example.*'],
            notHosts: ['internal.example.com'],
            headers: [
              { name: 'x-tenant', values: ['a', 'b*'] },
              { name: 'authorization', values: [] },
            ],
            notHeaders: [{ name: 'x-debug', values: [] }],
          },
        ],
        when: [
          { key: 'request.headers[x-canary]', values: ['1'], notValues: [] },
          { key: 'request.method', values: ['GET'], notValues: [] },
          { key: 'request.host', values: [], notValues: ['evil.example.com'] },
          { key: 'source.principal', values: ['spiffe://cluster.local/ns/web/sa/frontend', '*/sa/probe'], notValues: [] },
          { key: 'destination.port', values: ['80', '8443'], notValues: [] },
          { key: 'source.ip', values: ['10.1.2.3', 'fd00::1', '10.0.0.0/8'], notValues: [] },
          { key: 'source.namespace', values: ['shop', 'team-*'], notValues: [] },
          { key: 'request.path', values: ['/api/*'], notValues: [] },
        ],
        l7: true,
      },
    ],
  });
});

t.test('scope: mesh in the install namespace, workload with a selector, namespace without', async (t) => {
  const sel = { matchLabels: { app: 'cart' } };
  const compiled = (spec: unknown, ns = 'shop') => ok(compileAccessPolicy(ap(spec, ns), ctx)).policy;
  t.equal(compiled({}, 'weft-system').scope, 'mesh');
  t.notOk('selector' in compiled({}, 'weft-system'), 'mesh-wide without a selector: no selector');
  t.same(compiled({ selector: sel }, 'weft-system').selector, { matchLabels: { app: 'cart' }, matchExpressions: [] }, 'mesh-wide with a selector keeps it');
  t.equal(compiled({ selector: sel }, 'weft-system').scope, 'mesh');
  t.equal(compiled({ selector: sel }).scope, 'workload');
  t.equal(compiled({}).scope, 'namespace');
  const empty = compiled({ selector: {} });
  t.equal(empty.scope, 'namespace', 'an empty selector selects everything: the namespace');
  t.notOk('selector' in empty);
  t.equal(compiled({ selector: { matchLabels: {}, matchExpressions: [] } }).scope, 'namespace');
  const m = ok(compileMeshTLSPolicy(mtp({ mode: 'STRICT', selector: sel }), ctx)).policy;
  t.equal(m.scope, 'workload');
  t.equal(ok(compileMeshTLSPolicy(mtp({ mode: 'STRICT' }, 'weft-system'), ctx)).policy.scope, 'mesh');
});

t.test('rule names default to rules[i]; l7 is set by HTTP fields and request.* conditions only', async (t) => {
  const p = ok(
    compileAccessPolicy(
      ap({
        rules: [
          { to: [{ ports: [80] }] },
          { name: 'web', to: [{ paths: ['/x'] }] },
          { when: [{ key: 'request.headers[x-a]', values: ['1'] }] },
          { when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }], from: [{ namespaces: ['shop'] }] },
          { to: [{ ports: [80] }, { notHeaders: [{ name: 'x' }] }] },
        ],
      }),
      ctx,
    ),
  ).policy;
  t.same(
    p.rules.map((r) => [r.name, r.l7]),
    [
      ['rules[0]', false],
      ['web', true],
      ['rules[2]', true],
      ['rules[3]', false],
      ['rules[4]', true],
    ],
  );
});

t.test('a namespaceSelector is resolved to the names it matches now', async (t) => {
  const sel = (namespaceSelector: unknown) => ok(compileAccessPolicy(oneRule({ from: [{ namespaceSelector }] }), ctx));
  t.same(sel({ matchLabels: { team: 'retail' } }).policy.rules[0]?.from[0], { ...emptySource, selectedNamespaces: ['dev', 'shop'] });
  t.same(sel({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] }).policy.rules[0]?.from[0]?.selectedNamespaces, ['billing', 'shop', 'weft-system']);
  t.same(sel({}).policy.rules[0]?.from[0]?.selectedNamespaces, ['billing', 'dev', 'shop', 'weft-system'], 'empty: every namespace');
  const none = sel({ matchLabels: { team: 'nobody' } });
  t.same(none.policy.rules[0]?.from[0]?.selectedNamespaces, [], 'matching nothing stays a constraint');
  t.same(none.warnings, [{ path: 'spec.rules[0].from[0].namespaceSelector', message: 'matches no namespace (yet): this entry matches no peer' }]);
});

t.test('warnings: valid, but probably not what the author meant', async (t) => {
  const warnings = (p: AccessPolicy) => ok(compileAccessPolicy(p, ctx)).warnings;
  t.same(warnings(oneRule({ from: [{ identities: ['other.domain/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/b', '*/sa/b', 'spiffe://clu*'] }] })), [
    {
      path: 'spec.rules[0].from[0].identities[0]',
      message: 'trust domain "other.domain" is not this mesh\'s ("cluster.local"): only peers with certificates from that trust domain match',
    },
  ]);
  t.same(warnings(oneRule({ from: [{ ipBlocks: [{ cidr: '10.1.2.3/8', except: ['10.0.0.0/8'] }] }] })), [
    { path: 'spec.rules[0].from[0].ipBlocks[0].cidr', message: '"10.1.2.3/8" has address bits set past its /8 prefix: it means 10.0.0.0/8' },
    { path: 'spec.rules[0].from[0].ipBlocks[0].except[0]', message: 'excludes all of cidr: this block matches no address' },
  ]);
  t.same(warnings(oneRule({ from: [{ namespaces: ['shop', 'nowhere'] }] })), [{ path: 'spec.rules[0].from[0].namespaces[1]', message: 'there is no namespace "nowhere" (yet)' }]);
  t.same(warnings(ap({ action: 'DENY' })), [{ path: 'spec.rules', message: 'a DENY policy without rules matches nothing: it has no effect' }]);
  t.same(warnings(ap({ action: 'AUDIT', rules: [] })), [{ path: 'spec.rules', message: 'a AUDIT policy without rules matches nothing: it has no effect' }]);
  t.same(warnings(ap({ rules: [{}] })), [{ path: 'spec.rules[0]', message: 'sets no from, to or when: it matches every connection' }]);
  t.same(warnings(ap({})), [], 'ALLOW without rules is the documented "allow nothing"');
  t.same(ok(compileMeshTLSPolicy(mtp({ mode: 'STRICT', ports: [{ port: 80, mode: 'PERMISSIVE' }, { port: 81, mode: 'STRICT' }] }), ctx)).warnings, [
    { path: 'spec.ports[1].mode', message: 'the same as spec.mode (STRICT): this override changes nothing' },
  ]);
});

t.test('MeshTLSPolicy compiles with its ports and creation time', async (t) => {
  t.same(ok(compileMeshTLSPolicy(mtp({ mode: 'PERMISSIVE', ports: [{ port: 9090, mode: 'STRICT' }] }), ctx)), {
    ok: true,
    policy: { key: 'shop/m', namespace: 'shop', name: 'm', generation: 2, scope: 'namespace', mode: 'PERMISSIVE', ports: [{ port: 9090, mode: 'STRICT' }], createdAt: '2025-03-01T10:00:00.000Z' },
    warnings: [],
  });
  const fromString = { ...mtp({ mode: 'STRICT' }), metadata: { name: 'm', namespace: 'shop', creationTimestamp: CREATED as unknown as Date } };
  const c = ok(compileMeshTLSPolicy(fromString, ctx)).policy;
  t.equal(c.createdAt, '2025-03-01T10:00:00.000Z', 'a string timestamp (as from a watch) gives the same createdAt as a Date');
  t.equal(c.generation, 0, 'no generation: 0');
});

// ---- refusals ------------------------------------------------------------------------------------------

const WILDCARD = '"*" may only be the first or last character';

t.test('path wildcards are checked here, not in the schema, with the path of the value', async (t) => {
  const p = ap({ rules: [{ to: [{ ports: [80] }] }, { to: [{ paths: ['/api/*/users', '/ok', '*.js'], notPaths: ['/a*b'] }] }] });
  t.same(problems(compileAccessPolicy(p, ctx)), [
    { path: 'spec.rules[1].to[0].paths[0]', message: WILDCARD },
    { path: 'spec.rules[1].to[0].notPaths[0]', message: WILDCARD },
  ]);
  t.same(problems(compileAccessPolicy(oneRule({ to: [{ paths: ['*/x/*'] }] }), ctx)), [{ path: 'spec.rules[0].to[0].paths[0]', message: 'only one "*" is allowed' }]);
  t.same(problems(compileAccessPolicy(oneRule({ to: [{ paths: ['/x?a=1'] }] }), ctx)), [
    { path: 'spec.rules[0].to[0].paths[0]', message: 'a path is matched without its query and fragment: remove what follows "?" or "#"' },
  ]);
});

t.test('every rule the CRD checks with CEL is checked here too, with the same message', async (t) => {
  const cases: [string, unknown, PolicyProblem[]][] = [
    ['bad cidr', { from: [{ ipBlocks: [{ cidr: '10.0.0.0/33' }] }] }, [{ path: 'spec.rules[0].from[0].ipBlocks[0].cidr', message: 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8' }]],
    ['cidr without a prefix', { from: [{ ipBlocks: [{ cidr: '10.0.0.1' }] }] }, [{ path: 'spec.rules[0].from[0].ipBlocks[0].cidr', message: 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8' }]],
    ['IPv4-mapped IPv6', { from: [{ notIpBlocks: [{ cidr: '::ffff:10.0.0.0/104' }] }] }, [{ path: 'spec.rules[0].from[0].notIpBlocks[0].cidr', message: 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8' }]],
    ['except outside cidr', { from: [{ ipBlocks: [{ cidr: '10.0.0.0/16', except: ['10.0.1.0/24', '10.1.0.0/24'] }] }] }, [{ path: 'spec.rules[0].from[0].ipBlocks[0].except', message: 'every except entry must be a CIDR inside cidr' }]],
    ['except of the other family', { from: [{ ipBlocks: [{ cidr: '10.0.0.0/8', except: ['fd00::/8'] }] }] }, [{ path: 'spec.rules[0].from[0].ipBlocks[0].except', message: 'every except entry must be a CIDR inside cidr' }]],
    ['identity with * in the middle', { from: [{ identities: ['spiffe://cluster.local/ns/*/sa/x'] }] }, [{ path: 'spec.rules[0].from[0].identities[0]', message: 'an identity may contain one "*", only as its first or last character' }]],
    ['identity with two *', { from: [{ notIdentities: ['*/ns/a/*'] }] }, [{ path: 'spec.rules[0].from[0].notIdentities[0]', message: 'an identity may contain one "*", only as its first or last character' }]],
    ['identity that is not ns/sa', { from: [{ identities: ['cluster.local/sa/x'] }] }, [{ path: 'spec.rules[0].from[0].identities[0]', message: 'an identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or the same without "spiffe://"' }]],
    ['host with * in the middle', { to: [{ hosts: ['api.*.com'] }] }, [{ path: 'spec.rules[0].to[0].hosts[0]', message: 'a host may contain one "*", only as its first or last character' }]],
    ['host with a slash', { to: [{ notHosts: ['example.com/x'] }] }, [{ path: 'spec.rules[0].to[0].notHosts[0]', message: 'a host is letters, digits, ".", "-", ":" and "*", such as api.example.com' }]],
    ['method with digits', { to: [{ methods: ['GET2'] }] }, [{ path: 'spec.rules[0].to[0].methods[0]', message: 'an HTTP method is letters only, such as GET or post' }]],
    ['path not starting with / or *', { to: [{ paths: ['api/v1'] }] }, [{ path: 'spec.rules[0].to[0].paths[0]', message: 'a path starts with "/" (exact "/x" or prefix "/x/*") or "*" (suffix "*.js", or "*" for any)' }]],
    ...(
      [
        [70000, 'ports'],
        [0, 'ports'],
        ['8080', 'notPorts'],
        ['http--alt', 'ports'],
        ['a-very-long-port-name', 'ports'],
        ['HTTP', 'ports'],
      ] as const
    ).map(([port, field]): [string, unknown, PolicyProblem[]] => [
      `port ${JSON.stringify(port)}`,
      { to: [{ [field]: [port] }] },
      [{ path: `spec.rules[0].to[0].${field}[0]`, message: 'a port is a number from 1 to 65535, or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)' }],
    ]),
    ['unknown when key', { when: [{ key: 'source.user', values: ['x'] }] }, [{ path: 'spec.rules[0].when[0].key', message: 'key must be one of source.ip, source.principal, source.namespace, destination.ip, destination.port, request.method, request.path, request.host, request.headers[<name>]' }]],
    ['header key with a bad name', { when: [{ key: 'request.headers[a b]', values: ['x'] }] }, [{ path: 'spec.rules[0].when[0].key', message: 'key must be one of source.ip, source.principal, source.namespace, destination.ip, destination.port, request.method, request.path, request.host, request.headers[<name>]' }]],
    ['when without values', { when: [{ key: 'request.path', values: [], notValues: [] }] }, [{ path: 'spec.rules[0].when[0]', message: 'a condition needs values or notValues' }]],
    ['source.ip that is not an address', { when: [{ key: 'source.ip', notValues: ['10.0.0.0/8', 'localhost'] }] }, [{ path: 'spec.rules[0].when[0]', message: 'source.ip and destination.ip values are IP addresses or CIDRs' }]],
    ['destination.port out of range', { when: [{ key: 'destination.port', values: ['65536'] }] }, [{ path: 'spec.rules[0].when[0]', message: 'destination.port values are port numbers from 1 to 65535' }]],
    ['empty from entry', { from: [{}] }, [{ path: 'spec.rules[0].from[0]', message: 'a from entry must set at least one field (a misspelt field is dropped, and an empty entry would match every peer)' }]],
    ['empty to entry', { to: [{}] }, [{ path: 'spec.rules[0].to[0]', message: 'a to entry must set at least one field (a misspelt field is dropped, and an empty entry would match every request)' }]],
    ['In without values', { from: [{ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'In' }] } }] }, [{ path: 'spec.rules[0].from[0].namespaceSelector.matchExpressions[0].values', message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist' }]],
    ['Exists with values', { from: [{ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists', values: ['a'] }] } }] }, [{ path: 'spec.rules[0].from[0].namespaceSelector.matchExpressions[0].values', message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist' }]],
    ['bad label key', { from: [{ namespaceSelector: { matchLabels: { 'team/': 'a' } } }] }, [{ path: 'spec.rules[0].from[0].namespaceSelector.matchLabels', message: 'label keys are an optional DNS-subdomain prefix and "/", then a name of up to 63 letters, digits, "-", "_" and "."' }]],
  ];
  for (const [what, r, expected] of cases) t.same(problems(compileAccessPolicy(oneRule(r), ctx)), expected, what);

  t.same(problems(compileAccessPolicy(ap({ rules: [{ name: 'a' }, { name: 'b' }, { name: 'a' }] }), ctx)), [{ path: 'spec.rules', message: 'rule names must be unique' }]);
  t.same(problems(compileMeshTLSPolicy(mtp({ mode: 'STRICT', selector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: [] }] } }), ctx)), [
    { path: 'spec.selector.matchExpressions[0].values', message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist' },
  ]);
});

t.test('condition values are checked per key', async (t) => {
  const when = (key: string, values: string[]) => problems(compileAccessPolicy(oneRule({ when: [{ key, values }] }), ctx));
  t.same(when('source.principal', ['ns/a/sa/b']), [{ path: 'spec.rules[0].when[0].values[0]', message: 'an identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or the same without "spiffe://"' }]);
  t.same(when('source.principal', ['cluster.local/ns/*/sa/b']), [{ path: 'spec.rules[0].when[0].values[0]', message: WILDCARD }]);
  t.same(when('source.namespace', ['Shop', 'ok', 'a*b']), [
    { path: 'spec.rules[0].when[0].values[0]', message: 'a namespace is a lower-case DNS label; one "*" may stand first or last' },
    { path: 'spec.rules[0].when[0].values[2]', message: WILDCARD },
  ]);
  t.same(when('request.method', ['GET', 'PATCH!']), [{ path: 'spec.rules[0].when[0].values[1]', message: 'an HTTP method is letters only, such as GET or post' }]);
  t.same(when('request.host', ['a.*.com', 'a b']), [
    { path: 'spec.rules[0].when[0].values[0]', message: WILDCARD },
    { path: 'spec.rules[0].when[0].values[1]', message: 'a host is letters, digits, ".", "-", ":" and "*", such as api.example.com' },
  ]);
  t.same(when('request.path', ['api', '/a/*/b']), [
    { path: 'spec.rules[0].when[0].values[0]', message: 'a path starts with "/" (exact "/x" or prefix "/x/*") or "*" (suffix "*.js", or "*" for any)' },
    { path: 'spec.rules[0].when[0].values[1]', message: WILDCARD },
  ]);
  t.same(ok(compileAccessPolicy(oneRule({ when: [{ key: 'request.headers[x-a]', values: ['a*b*c'] }] }), ctx)).policy.rules[0]?.when[0]?.values, ['a*b*c'], 'header values are free text');
});

t.test('the schema itself: types, enums, bounds, required and unknown fields', async (t) => {
  t.same(problems(compileAccessPolicy(ap({ action: 'allow' }), ctx)), [{ path: 'spec.action', message: '"allow" is not one of ALLOW, DENY, AUDIT' }]);
  t.same(problems(compileAccessPolicy(ap({ rules: [{ form: [{ namespaces: ['x'] }] }] }), ctx)), [{ path: 'spec.rules[0].form', message: 'unknown field "form"' }], 'a misspelt field is an error, never ignored');
  t.same(problems(compileAccessPolicy(ap({ rules: { from: [] } }), ctx)), [{ path: 'spec.rules', message: 'must be a list, not {"from":[]}' }]);
  t.same(problems(compileAccessPolicy(oneRule({ to: [{ ports: [true, 80.5] }] }), ctx)), [
    { path: 'spec.rules[0].to[0].ports[0]', message: 'must be an integer or a string, not true' },
    { path: 'spec.rules[0].to[0].ports[1]', message: 'must be an integer or a string, not 80.5' },
  ]);
  t.same(problems(compileAccessPolicy(oneRule({ name: 'Web_1' }), ctx)), [{ path: 'spec.rules[0].name', message: '"Web_1" should match \'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$\'' }]);
  t.same(problems(compileAccessPolicy(oneRule({ to: [{ headers: [{ values: ['x'] }] }] }), ctx)), [{ path: 'spec.rules[0].to[0].headers[0].name', message: 'is required' }]);
  t.same(problems(compileAccessPolicy(ap({ rules: Array.from({ length: 33 }, () => ({})) }), ctx)), [{ path: 'spec.rules', message: 'must have at most 32 items, not 33' }]);
  t.same(problems(compileAccessPolicy(oneRule({ to: [{ paths: [`/${'a'.repeat(1024)}`] }] }), ctx)), [{ path: 'spec.rules[0].to[0].paths[0]', message: 'must be at most 1024 characters' }]);
  t.same(problems(compileAccessPolicy(oneRule({ from: [{ identities: [''] }] }), ctx)), [{ path: 'spec.rules[0].from[0].identities[0]', message: 'must not be empty' }]);
  t.ok(compileAccessPolicy(oneRule({ to: [{ paths: [`/${'\u{1F600}'.repeat(600)}`] }] }), ctx).ok, 'lengths count characters, as the API server does, not UTF-16 units');

  t.same(problems(compileMeshTLSPolicy(mtp(undefined), ctx)), [{ path: 'spec', message: 'is required' }]);
  t.same(problems(compileMeshTLSPolicy(mtp({}), ctx)), [{ path: 'spec.mode', message: 'is required' }]);
  t.same(problems(compileMeshTLSPolicy(mtp({ mode: 'strict', ports: [{ port: 0, mode: 'STRICT' }, { port: 80, mode: 'STRICT' }, { port: 80, mode: 'PERMISSIVE' }] }), ctx)), [
    { path: 'spec.mode', message: '"strict" is not one of STRICT, PERMISSIVE' },
    { path: 'spec.ports[0].port', message: 'must be at least 1, not 0' },
    { path: 'spec.ports[2]', message: 'duplicate entry (port 80)' },
  ]);
});

t.test('every problem is reported at once, and metadata is checked too', async (t) => {
  const p = ap({ action: 'LOG', rules: [{ from: [{ ipBlocks: [{ cidr: 'x' }] }], to: [{ paths: ['/a*b'], methods: ['G3T'] }], when: [{ key: 'nope', values: ['1'] }] }] });
  t.same(
    problems(compileAccessPolicy(p, ctx)).map((x) => x.path),
    ['spec.action', 'spec.rules[0].from[0].ipBlocks[0].cidr', 'spec.rules[0].to[0].methods[0]', 'spec.rules[0].when[0].key'],
    'schema problems first (the path wildcard is only looked at once the schema holds)',
  );
  const noMeta = { apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: {} } as AccessPolicy;
  t.same(problems(compileAccessPolicy(noMeta, ctx)), [
    { path: 'metadata.namespace', message: 'is required (Weft policies are namespaced)' },
    { path: 'metadata.name', message: 'is required' },
    { path: 'metadata.creationTimestamp', message: 'is required (the API server sets it)' },
  ]);
});

t.test('compile neither changes its input nor shares lists with it', async (t) => {
  const spec = { selector: { matchLabels: { a: 'b' } }, rules: [{ to: [{ ports: [80], paths: ['/x'] }], from: [{ ipBlocks: [{ cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }] }] }] };
  const before = structuredClone(spec);
  const p = ok(compileAccessPolicy(ap(spec), ctx)).policy;
  t.same(spec, before);
  p.rules[0]?.to[0]?.ports.push(81);
  p.selector?.matchExpressions.push({ key: 'x', operator: 'Exists', values: [] });
  t.same(spec, before, 'compiled lists are copies');
  t.same(ok(compileAccessPolicy(ap(spec), ctx)).policy.rules[0]?.to[0], { ...emptyTarget, ports: [80], paths: ['/x'] });
});
