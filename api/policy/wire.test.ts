// wire.ts: compiled policies survive the trip to an agent (JSON, the sync parser) unchanged, and a
// malformed one is refused with a ProtocolError naming where it is wrong.
import t from 'tap';
import { ProtocolError, parseSyncMessage } from '../agent-sync.ts';
import { compileAccessPolicy, compileMeshTLSPolicy } from './compile.ts';
import type { CompileResult } from './model.ts';
import type { AccessPolicySpec } from './types.gen.ts';
import { checkCompiledAccessPolicy, checkCompiledMeshTLSPolicy } from './wire.ts';

const ctx = { installNamespace: 'weft-system', trustDomain: 'cluster.local', namespaces: [{ name: 'web', labels: { team: 'web' } }] };
const metadata = { name: 'p', namespace: 'shop', generation: 4, creationTimestamp: new Date('2025-01-01T00:00:00Z') };

function ok<T>(r: CompileResult<T>): T {
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.policy;
}

const spec: AccessPolicySpec = {
  selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['cart'] }] },
  action: 'DENY',
  rules: [
    {
      from: [{ identities: ['cluster.local/ns/web/sa/x'], namespaceSelector: { matchLabels: { team: 'web' } }, ipBlocks: [{ cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }] }],
      to: [{ ports: [80, 'http'], methods: ['GET'], headers: [{ name: 'x-a', values: ['1'] }] }],
      when: [{ key: 'request.headers[x-b]', values: ['2'] }, { key: 'destination.port', notValues: ['9090'] }],
    },
  ],
};
const access = ok(compileAccessPolicy({ apiVersion: 'weft.dev/v1alpha1', kind: 'AccessPolicy', metadata, spec }, ctx));
const mtls = ok(compileMeshTLSPolicy({ apiVersion: 'weft.dev/v1alpha1', kind: 'MeshTLSPolicy', metadata, spec: { mode: 'STRICT', ports: [{ port: 8080, mode: 'PERMISSIVE' }] } }, ctx));

const wire = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));

t.test('what compile makes passes the checks unchanged, alone and inside a sync message', async (t) => {
  t.same(checkCompiledAccessPolicy(wire(access), 'p'), access);
  t.same(checkCompiledMeshTLSPolicy(wire(mtls), 'p'), mtls);
  const line = JSON.stringify({
    type: 'snapshot',
    epoch: 'e1',
    revision: 3,
    config: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' },
    resources: [
      { kind: 'AccessPolicy', value: access },
      { kind: 'MeshTLSPolicy', value: mtls },
    ],
  });
  const msg = parseSyncMessage(line);
  if (msg.type !== 'snapshot') return t.fail('not a snapshot');
  t.same(
    msg.resources.map((r) => r.value),
    [access, mtls],
  );
});

/** Marks a field to delete. */
const DELETE = Symbol('delete');
/** A copy of `v` with the field at `path` set to `value` (or deleted). */
function mutate(v: unknown, path: (string | number)[], value: unknown): unknown {
  const copy = wire(v);
  let node = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1] ?? '';
  if (value === DELETE) delete node[last];
  else node[last] = value;
  return copy;
}

type Case = [string, (string | number)[], unknown, RegExp];

t.test('malformed AccessPolicies are refused with the path of the problem', async (t) => {
  t.throws(() => checkCompiledAccessPolicy('nope', 'x'), /^x: must be an object$/);
  const cases: Case[] = [
    ['missing key', ['key'], DELETE, /^x\.key: must be a string$/],
    ['negative generation', ['generation'], -1, /^x\.generation: must be a non-negative integer$/],
    ['unknown scope', ['scope'], 'cluster', /^x\.scope: must be mesh, namespace or workload$/],
    ['workload scope without selector', ['selector'], DELETE, /^x\.selector: is required for scope workload$/],
    ['bad operator', ['selector', 'matchExpressions', 0, 'operator'], 'Matches', /^x\.selector\.matchExpressions\[0\]\.operator: must be In, NotIn, Exists or DoesNotExist$/],
    ['label value not a string', ['selector', 'matchLabels'], { a: 1 }, /^x\.selector\.matchLabels\["a"\]: must be a string$/],
    ['lower-case action', ['action'], 'deny', /^x\.action: must be ALLOW, DENY or AUDIT$/],
    ['rules missing', ['rules'], DELETE, /^x\.rules: must be a list$/],
    ['l7 missing', ['rules', 0, 'l7'], DELETE, /^x\.rules\[0\]\.l7: must be a boolean$/],
    ['from list missing', ['rules', 0, 'from', 0, 'notIdentities'], DELETE, /^x\.rules\[0\]\.from\[0\]\.notIdentities: must be a list$/],
    ['selectedNamespaces not strings', ['rules', 0, 'from', 0, 'selectedNamespaces'], [1], /^x\.rules\[0\]\.from\[0\]\.selectedNamespaces\[0\]: must be a string$/],
    ['cidr not a string', ['rules', 0, 'from', 0, 'ipBlocks', 0, 'cidr'], 10, /^x\.rules\[0\]\.from\[0\]\.ipBlocks\[0\]\.cidr: must be a string$/],
    ['except missing', ['rules', 0, 'from', 0, 'ipBlocks', 0, 'except'], DELETE, /^x\.rules\[0\]\.from\[0\]\.ipBlocks\[0\]\.except: must be a list$/],
    ['port 0', ['rules', 0, 'to', 0, 'ports', 0], 0, /^x\.rules\[0\]\.to\[0\]\.ports\[0\]: must be a port number \(1-65535\) or a port name$/],
    ['port empty name', ['rules', 0, 'to', 0, 'notPorts'], [''], /^x\.rules\[0\]\.to\[0\]\.notPorts\[0\]: must be a port number/],
    ['header values missing', ['rules', 0, 'to', 0, 'headers', 0, 'values'], DELETE, /^x\.rules\[0\]\.to\[0\]\.headers\[0\]\.values: must be a list$/],
    ['unknown condition key', ['rules', 0, 'when', 0, 'key'], 'request.cookie', /^x\.rules\[0\]\.when\[0\]\.key: unknown condition key "request\.cookie"$/],
    ['notValues missing', ['rules', 0, 'when', 1, 'notValues'], DELETE, /^x\.rules\[0\]\.when\[1\]\.notValues: must be a list$/],
  ];
  for (const [what, path, value, message] of cases) {
    const input = mutate(access, path, value);
    t.throws(() => checkCompiledAccessPolicy(input, 'x'), message, what);
    t.throws(() => checkCompiledAccessPolicy(input, 'x'), ProtocolError, `${what}: a ProtocolError`);
  }
});

t.test('malformed MeshTLSPolicies are refused with the path of the problem', async (t) => {
  const cases: Case[] = [
    ['lower-case mode', ['mode'], 'strict', /^x\.mode: must be STRICT or PERMISSIVE$/],
    ['port out of range', ['ports', 0, 'port'], 65536, /^x\.ports\[0\]\.port: must be a port number \(1-65535\)$/],
    ['port mode', ['ports', 0, 'mode'], 'OFF', /^x\.ports\[0\]\.mode: must be STRICT or PERMISSIVE$/],
    ['createdAt missing', ['createdAt'], DELETE, /^x\.createdAt: must be a string$/],
    ['ports not a list', ['ports'], {}, /^x\.ports: must be a list$/],
  ];
  for (const [what, path, value, message] of cases) t.throws(() => checkCompiledMeshTLSPolicy(mutate(mtls, path, value), 'x'), message, what);
});

t.test('a bad policy inside a sync message names its place in the message', async (t) => {
  const bad = { ...access, action: 'PERMIT' };
  const line = JSON.stringify({ type: 'delta', epoch: 'e', revision: 2, base: 1, upserts: [{ kind: 'AccessPolicy', value: bad }], removes: [] });
  t.throws(() => parseSyncMessage(line), /^upserts\[0\]\.value\.action: must be ALLOW, DENY or AUDIT$/);
});
