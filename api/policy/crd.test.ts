// The CRDs against a real API server (a playground without the mesh): the chart's YAML is exactly
// the schema, the server accepts it (structural, within the CEL cost budget), fills defaults,
// refuses bad policies with the CEL rule's message — and compile.ts refuses the same objects at the
// same path with the same message, so that the controller never enforces what a current CRD would
// have refused. kubectl get shows the printer columns from the status the controller writes.
import t from 'tap';
import { join } from 'node:path';
import { Playground, REPO, uniqueName } from '../../tests/helpers/playground.ts';
import { compileAccessPolicy, compileMeshTLSPolicy } from './compile.ts';
import type { CompileContext } from './compile.ts';
import type { CompileResult, PolicyProblem } from './model.ts';
import { CRDS } from './schema.ts';
import type { AccessPolicy, MeshTLSPolicy } from './types.gen.ts';

const pg = new Playground(uniqueName('crd'));
const CRD_DIR = join(REPO, 'helm/weft/crds');
const NS = 'shop';
const INSTALL_NS = 'weft-system';
const ctx: CompileContext = { installNamespace: INSTALL_NS, trustDomain: 'cluster.local', namespaces: [{ name: NS, labels: {} }] };

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await pg.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const accessPolicy = (name: string, spec: unknown, namespace = NS): object => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name, namespace }, ...(spec === undefined ? {} : { spec }) });
const meshTLSPolicy = (name: string, spec: unknown, namespace = NS): object => ({ apiVersion: 'weft.dev/v1alpha1', kind: 'MeshTLSPolicy', metadata: { name, namespace }, spec });

/** What compile makes of an object as the server stored it, or would have (metadata filled in). */
function compileLike(obj: object): CompileResult<unknown> {
  const o = obj as AccessPolicy | MeshTLSPolicy;
  const metadata = { creationTimestamp: new Date(), generation: 1, ...o.metadata };
  return o.kind === 'AccessPolicy' ? compileAccessPolicy({ ...o, metadata }, ctx) : compileMeshTLSPolicy({ ...o, metadata }, ctx);
}

t.teardown(async () => {
  await pg.down();
});

t.before(async () => {
  const up = await pg.up(1, ['--no-mesh']);
  if (up.code !== 0) throw new Error(`weft dev up failed: ${up.stderr}`);
  await kubectl(['apply', '-f', CRD_DIR]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', CRD_DIR]);
  await kubectl(['create', 'namespace', NS]);
  await kubectl(['create', 'namespace', INSTALL_NS]);
});

t.test('the chart ships exactly the schema, and the server establishes it as declared', async (t) => {
  for (const crd of CRDS) {
    const file = join(CRD_DIR, `${crd.spec.group}_${crd.spec.names.plural}.yaml`);
    const parsed: unknown = JSON.parse(await kubectl(['create', '--dry-run=client', '-o', 'json', '-f', file]));
    t.same(parsed, JSON.parse(JSON.stringify(crd)), `${file} reads back as the exported ${crd.spec.names.kind} CRD`);

    const live = JSON.parse(await kubectl(['get', 'crd', crd.metadata.name, '-o', 'json'])) as {
      status: { conditions: { type: string; status: string }[]; acceptedNames: { shortNames: string[]; categories: string[] } };
    };
    const cond = (type: string) => live.status.conditions.find((c) => c.type === type)?.status;
    t.equal(cond('Established'), 'True', `${crd.metadata.name} Established`);
    t.equal(cond('NamesAccepted'), 'True', `${crd.metadata.name} NamesAccepted`);
    t.same(live.status.acceptedNames.shortNames, crd.spec.names.shortNames);
    t.same(live.status.acceptedNames.categories, ['weft']);
  }
  const explain = await kubectl(['explain', 'accesspolicy.spec.rules.from.identities']);
  t.match(explain, /spiffe:\/\/<trust-domain>\/ns\/<namespace>\/sa\/<service-account>/, 'kubectl explain shows the descriptions');
});

t.test('good policies are accepted, with the defaults filled in, and compile as stored', async (t) => {
  const full = {
    selector: { matchLabels: { app: 'cart' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['api'] }] },
    action: 'DENY',
    rules: [
      {
        name: 'web',
        from: [
          {
            identities: ['cluster.local/ns/web/sa/frontend', 'spiffe://cluster.local/ns/web/*', '*/sa/probe', '*'],
            namespaces: [NS],
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': NS } },
            ipBlocks: [{ cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }, { cidr: 'fd00::/8' }],
          },
        ],
        to: [
          { ports: [8080, 'http'], methods: ['GET', 'post'], paths: ['/api/*', '*.js', '*'], hosts: ['*.example.com', 'example.*', 'API.example.com:8080'] },
          { headers: [{ name: 'X-Tenant', values: ['a*'] }, { name: 'authorization' }], notPorts: [9090] },
        ],
        when: [
          { key: 'request.headers[X-Canary]', values: ['1'] },
          { key: 'source.ip', notValues: ['10.0.0.1', '192.168.0.0/16', 'fd00::1'] },
          { key: 'destination.port', values: ['8080'] },
        ],
      },
      {},
    ],
  };
  await kubectl(['apply', '-f', '-'], JSON.stringify({ kind: 'List', apiVersion: 'v1', items: [accessPolicy('full', full), accessPolicy('empty', {}), accessPolicy('bare', undefined), accessPolicy('mesh', { rules: [{ from: [{ namespaces: [NS] }] }] }, INSTALL_NS)] }));
  await kubectl(['apply', '-f', '-'], JSON.stringify({ kind: 'List', apiVersion: 'v1', items: [meshTLSPolicy('strict', { mode: 'STRICT', ports: [{ port: 8080, mode: 'PERMISSIVE' }] }), meshTLSPolicy('mesh', { mode: 'PERMISSIVE' }, INSTALL_NS)] }));

  const get = async <T>(kind: string, name: string, ns = NS): Promise<T> => JSON.parse(await kubectl(['get', kind, name, '-n', ns, '-o', 'json'])) as T;
  t.same((await get<AccessPolicy>('accesspolicy', 'empty')).spec, { action: 'ALLOW' }, 'action defaults to ALLOW');
  t.same((await get<AccessPolicy>('accesspolicy', 'bare')).spec, { action: 'ALLOW' }, 'a policy without spec gets spec {action: ALLOW}');

  const stored = await get<AccessPolicy>('ap', 'full');
  t.same(stored.spec, full, 'the full policy is stored as written');
  const compiled = compileAccessPolicy(stored, ctx);
  t.ok(compiled.ok, `and compiles as stored: ${JSON.stringify(compiled.ok ? '' : compiled.problems)}`);
  if (compiled.ok) {
    t.equal(compiled.policy.generation, 1);
    t.equal(compiled.policy.scope, 'workload');
    t.same(compiled.policy.rules[0]?.from[0]?.selectedNamespaces, [], 'the context knows no such labels: resolved to none');
  }
  const mesh = compileAccessPolicy(await get<AccessPolicy>('ap', 'mesh', INSTALL_NS), ctx);
  t.equal(mesh.ok && mesh.policy.scope, 'mesh');
  const mtls = compileMeshTLSPolicy(await get<MeshTLSPolicy>('mtp', 'strict'), ctx);
  t.ok(mtls.ok && mtls.policy.createdAt.endsWith('Z') && mtls.policy.ports.length === 1, 'the MeshTLSPolicy compiles with its creation time');

  const all = await kubectl(['get', 'weft', '-A', '-o', 'name']);
  t.same(all.trim().split('\n').sort(), [
    'accesspolicy.weft.dev/bare',
    'accesspolicy.weft.dev/empty',
    'accesspolicy.weft.dev/full',
    'accesspolicy.weft.dev/mesh',
    'meshtlspolicy.weft.dev/mesh',
    'meshtlspolicy.weft.dev/strict',
  ], 'kubectl get weft lists both kinds (category weft)');
});

/** A refusal: the object, the field the server names, and the rule's message (or the schema's words). */
type Bad = [what: string, obj: object, path: string, message: string];

const rule = (r: object): object => accessPolicy('bad', { rules: [r] });
const PORT = 'a port is a number from 1 to 65535, or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)';
const bad: Bad[] = [
  ['bad cidr', rule({ from: [{ ipBlocks: [{ cidr: '10.0.0.0/33' }] }] }), 'spec.rules[0].from[0].ipBlocks[0].cidr', 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8'],
  ['IPv4-mapped cidr', rule({ from: [{ ipBlocks: [{ cidr: '::ffff:10.0.0.0/104' }] }] }), 'spec.rules[0].from[0].ipBlocks[0].cidr', 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8'],
  ['except outside cidr', rule({ from: [{ notIpBlocks: [{ cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] }] }] }), 'spec.rules[0].from[0].notIpBlocks[0].except', 'every except entry must be a CIDR inside cidr'],
  ['* in the middle of an identity', rule({ from: [{ identities: ['spiffe://cluster.local/ns/*/sa/x'] }] }), 'spec.rules[0].from[0].identities[0]', 'an identity may contain one "*", only as its first or last character'],
  ['identity not ns/sa', rule({ from: [{ notIdentities: ['cluster.local/x'] }] }), 'spec.rules[0].from[0].notIdentities[0]', 'an identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or the same without "spiffe://"'],
  ['unknown when key', rule({ when: [{ key: 'source.user', values: ['x'] }] }), 'spec.rules[0].when[0].key', 'key must be one of source.ip, source.principal, source.namespace, destination.ip, destination.port, request.method, request.path, request.host, request.headers[<name>]'],
  ['when without values', rule({ when: [{ key: 'request.path' }] }), 'spec.rules[0].when[0]', 'a condition needs values or notValues'],
  ['when source.ip not an address', rule({ when: [{ key: 'source.ip', values: ['localhost'] }] }), 'spec.rules[0].when[0]', 'source.ip and destination.ip values are IP addresses or CIDRs'],
  ['port 70000', rule({ to: [{ ports: [70000] }] }), 'spec.rules[0].to[0].ports[0]', PORT],
  ['port name too long', rule({ to: [{ ports: ['a-very-long-port-name'] }] }), 'spec.rules[0].to[0].ports[0]', PORT],
  ['port number as a string', rule({ to: [{ notPorts: ['8080'] }] }), 'spec.rules[0].to[0].notPorts[0]', PORT],
  ['path not starting with / or *', rule({ to: [{ paths: ['api/v1'] }] }), 'spec.rules[0].to[0].paths[0]', 'a path starts with "/" (exact "/x" or prefix "/x/*") or "*" (suffix "*.js", or "*" for any)'],
  ['* in the middle of a host', rule({ to: [{ hosts: ['api.*.com'] }] }), 'spec.rules[0].to[0].hosts[0]', 'a host may contain one "*", only as its first or last character'],
  ['method with digits', rule({ to: [{ methods: ['G3T'] }] }), 'spec.rules[0].to[0].methods[0]', 'an HTTP method is letters only, such as GET or post'],
  ['empty from entry', rule({ from: [{}] }), 'spec.rules[0].from[0]', 'a from entry must set at least one field (a misspelt field is dropped, and an empty entry would match every peer)'],
  ['empty to entry', rule({ to: [{}] }), 'spec.rules[0].to[0]', 'a to entry must set at least one field (a misspelt field is dropped, and an empty entry would match every request)'],
  ['duplicate rule names', accessPolicy('bad', { rules: [{ name: 'a' }, { name: 'a' }] }), 'spec.rules', 'rule names must be unique'],
  ['In without values', accessPolicy('bad', { selector: { matchExpressions: [{ key: 'app', operator: 'In' }] } }), 'spec.selector.matchExpressions[0].values', 'values must be set for In and NotIn, and empty for Exists and DoesNotExist'],
  ['bad label key', accessPolicy('bad', { selector: { matchLabels: { '-app': 'x' } } }), 'spec.selector.matchLabels', 'label keys are an optional DNS-subdomain prefix and "/", then a name of up to 63 letters, digits, "-", "_" and "."'],
];

t.test('bad policies are refused with the rule\'s message, and compile refuses them the same way', async (t) => {
  for (const [what, obj, path, message] of bad) {
    const r = await pg.kubectl(['apply', '-f', '-'], JSON.stringify(obj));
    t.not(r.code, 0, `${what}: refused by the API server`);
    const line = r.stderr.split('\n').find((l) => l.includes(`${path}: Invalid value`)) ?? r.stderr;
    t.ok(line.includes(message), `${what}: the server names ${path} with the message (${line.trim()})`);
    const compiled = compileLike(obj);
    t.same(compiled.ok ? [] : compiled.problems, [{ path, message }] satisfies PolicyProblem[], `${what}: compile says the same`);
  }
});

t.test('the schema\'s own checks refuse what compile refuses too', async (t) => {
  const cases: [string, object, RegExp, string][] = [
    ['lower-case action', accessPolicy('bad', { action: 'allow' }), /spec\.action: Unsupported value: "allow"/, 'spec.action'],
    ['rule name not a DNS label', rule({ name: 'Web_1' }), /spec\.rules\[0\]\.name: Invalid value: "Web_1": spec\.rules\[0\]\.name in body should match/, 'spec.rules[0].name'],
    ['MeshTLSPolicy without mode', meshTLSPolicy('bad', {}), /spec\.mode: Required value/, 'spec.mode'],
    ['MeshTLSPolicy port 70000', meshTLSPolicy('bad', { mode: 'STRICT', ports: [{ port: 70000, mode: 'STRICT' }] }), /spec\.ports\[0\]\.port: Invalid value: 70000: spec\.ports\[0\]\.port in body should be less than or equal to 65535/, 'spec.ports[0].port'],
    ['MeshTLSPolicy duplicate port', meshTLSPolicy('bad', { mode: 'STRICT', ports: [{ port: 80, mode: 'STRICT' }, { port: 80, mode: 'PERMISSIVE' }] }), /spec\.ports\[1\]: Duplicate value/, 'spec.ports[1]'],
    ['too many rules', accessPolicy('bad', { rules: Array.from({ length: 33 }, () => ({})) }), /spec\.rules: Too many: 33: must have at most 32 items/, 'spec.rules'],
  ];
  for (const [what, obj, serverSays, path] of cases) {
    const r = await pg.kubectl(['apply', '-f', '-'], JSON.stringify(obj));
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.stderr, serverSays, `${what}: ${r.stderr.trim()}`);
    const compiled = compileLike(obj);
    t.same(compiled.ok ? [] : compiled.problems.map((p) => p.path), [path], `${what}: compile refuses it at ${path}`);
  }
});

t.test('what the schema leaves to the controller reaches it: path wildcards, address bits', async (t) => {
  const obj = accessPolicy('wild', { rules: [{ to: [{ paths: ['/ok'] }] }, { to: [{ paths: ['/api/*/users'] }], from: [{ ipBlocks: [{ cidr: '10.1.2.3/8' }] }] }] });
  await kubectl(['apply', '-f', '-'], JSON.stringify(obj));
  const stored = JSON.parse(await kubectl(['get', 'ap', 'wild', '-n', NS, '-o', 'json'])) as AccessPolicy;
  t.same(compileAccessPolicy(stored, ctx), { ok: false, problems: [{ path: 'spec.rules[1].to[0].paths[0]', message: '"*" may only be the first or last character' }] }, 'accepted by the server, refused by compile: Accepted=False is reachable');
  await kubectl(['delete', 'ap', 'wild', '-n', NS]);
});

t.test('kubectl get shows the printer columns, from the status the controller writes', async (t) => {
  await kubectl(['apply', '-f', '-'], JSON.stringify(accessPolicy('cols', { action: 'AUDIT' })));
  await kubectl(['apply', '-f', '-'], JSON.stringify(meshTLSPolicy('cols', { mode: 'STRICT' })));
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const condition = (type: string, status: string, reason: string) => ({ type, status, reason, message: `${type} is ${status}`, observedGeneration: 1, lastTransitionTime: now });
  const status = {
    status: {
      observedGeneration: 1,
      conditions: [condition('Accepted', 'True', 'Accepted'), condition('ResolvedRefs', 'True', 'ResolvedRefs'), condition('Programmed', 'False', 'Pending')],
      selectedWorkloads: 3,
      unmeshedWorkloads: 1,
      nodes: { programmed: 1, total: 2, pending: ['node-2: agent at revision 4, needs 5'] },
      programmedNodes: '1/2',
    },
  };
  for (const kind of ['ap', 'mtp']) await kubectl(['patch', kind, 'cols', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);

  const table = async (kind: string) => (await kubectl(['get', kind, 'cols', '-n', NS])).trim().split('\n').map((l) => l.split(/\s+/));
  const ap = await table('ap');
  t.same(ap[0], ['NAME', 'ACTION', 'ACCEPTED', 'PROGRAMMED', 'WORKLOADS', 'NODES', 'AGE']);
  t.same(ap[1]?.slice(0, 6), ['cols', 'AUDIT', 'True', 'False', '3', '1/2']);
  const mtp = await table('mtp');
  t.same(mtp[0], ['NAME', 'MODE', 'ACCEPTED', 'PROGRAMMED', 'WORKLOADS', 'NODES', 'AGE']);
  t.same(mtp[1]?.slice(0, 6), ['cols', 'STRICT', 'True', 'False', '3', '1/2']);

  const stored = JSON.parse(await kubectl(['get', 'ap', 'cols', '-n', NS, '-o', 'json'])) as AccessPolicy;
  t.same(stored.status, status.status, 'the whole status is kept (nothing pruned)');

  const badStatus = await pg.kubectl(['patch', 'ap', 'cols', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { conditions: [{ ...condition('Accepted', 'Maybe', 'X') }] } })]);
  t.not(badStatus.code, 0, 'a condition status other than True/False/Unknown is refused');
  t.match(badStatus.stderr, /status\.conditions\[0\]\.status: Unsupported value: "Maybe"/);
  const specViaStatus = await kubectl(['patch', 'ap', 'cols', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify({ spec: { action: 'DENY' } })]);
  t.ok(specViaStatus, 'a status patch that touches spec is accepted...');
  t.equal((JSON.parse(await kubectl(['get', 'ap', 'cols', '-n', NS, '-o', 'json'])) as AccessPolicy).spec?.action, 'AUDIT', '...but the status subresource leaves spec alone');
});
