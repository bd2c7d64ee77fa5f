// Turns an AccessPolicy or MeshTLSPolicy object into the compiled form agents enforce (model.ts),
// or into the list of everything wrong with it. Pure: the controller passes in what it knows of
// the cluster (install namespace, trust domain, namespaces and their labels).
//
// Three layers, in order:
//   1. the CRD schema (validate.ts walks schema.ts, CEL rules through their twins): the
//      controller cannot assume that the CRD installed in the cluster is the current one;
//   2. what the schema leaves to the controller on purpose, so that it shows in status:
//      the placement of "*" in paths, and the values of `when` conditions per key;
//   3. normalization: every list present, methods upper-case, hosts and header names lower-case,
//      identities with spiffe://, CIDRs canonical, namespaceSelectors resolved to names.
// Every problem is collected (not only the first) with a path into the object; warnings are for
// a policy that is valid but probably not what its author meant.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { formatCidr, formatIp, masked, parseCidr, parseIp } from './cidr.ts';
import type {
  CompileResult,
  CompiledAccessPolicy,
  CompiledCondition,
  CompiledMeshTLSPolicy,
  CompiledRule,
  CompiledSource,
  CompiledTarget,
  ConditionKey,
  HeaderMatch,
  IPBlock,
  LabelSelector,
  PolicyProblem,
  PolicyScope,
} from './model.ts';
import { DNS_LABEL, HOST, IDENTITY, MESSAGES, METHOD, accessPolicySchema, meshTLSPolicySchema, re, wildcardAtEdge } from './schema.ts';
import type { Schema } from './schema.ts';
import { isEmptySelector, matchesLabelSelector } from './selector.ts';
import type {
  AccessPolicy,
  AccessPolicySpec,
  AccessRule,
  AccessSource,
  AccessTarget,
  ConditionSpec,
  HeaderMatchSpec,
  IPBlockSpec,
  LabelSelectorSpec,
  MeshTLSPolicy,
  MeshTLSPolicySpec,
} from './types.gen.ts';
import { validate } from './validate.ts';

export interface CompileContext {
  /** Policies in this namespace are mesh-wide. */
  installNamespace: string;
  /** The mesh's trust domain (identities in another one draw a warning). */
  trustDomain: string;
  /** The cluster's namespaces now, to resolve namespaceSelectors. */
  namespaces: { name: string; labels: Record<string, string> }[];
}

/** Problems and warnings found along the way. */
class Findings {
  readonly problems: PolicyProblem[] = [];
  readonly warnings: PolicyProblem[] = [];
  problem(path: string, message: string): void {
    this.problems.push({ path, message });
  }
  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }
  result<T>(policy: T | undefined): CompileResult<T> {
    if (this.problems.length > 0 || policy === undefined) return { ok: false, problems: this.problems };
    return { ok: true, policy, warnings: this.warnings };
  }
}

// ---- the object around the spec ----------------------------------------------------------------------

interface Meta {
  key: string;
  namespace: string;
  name: string;
  generation: number;
  createdAt: string;
}

function readMeta(metadata: V1ObjectMeta | undefined, f: Findings): Meta | undefined {
  const namespace = metadata?.namespace;
  const name = metadata?.name;
  if (!namespace) f.problem('metadata.namespace', 'is required (Weft policies are namespaced)');
  if (!name) f.problem('metadata.name', 'is required');
  // Typed as a Date by the client library, but a string as it comes from a watch or a list.
  const created: unknown = metadata?.creationTimestamp;
  const createdAt = created instanceof Date ? created : typeof created === 'string' ? new Date(created) : undefined;
  if (!createdAt || Number.isNaN(createdAt.getTime())) f.problem('metadata.creationTimestamp', 'is required (the API server sets it)');
  if (!namespace || !name || !createdAt) return undefined;
  return { key: `${namespace}/${name}`, namespace, name, generation: metadata?.generation ?? 0, createdAt: createdAt.toISOString() };
}

/** The spec, checked against the CRD schema, with the schema's defaults applied. */
function readSpec<T>(obj: { spec?: unknown }, root: Schema, f: Findings): T | undefined {
  const specSchema = root.properties?.spec;
  if (!specSchema) throw new Error('a policy schema without spec');
  const wrapper: Schema = { type: 'object', properties: { spec: specSchema }, ...(root.required ? { required: root.required } : {}) };
  const { problems, value } = validate(obj.spec === undefined ? {} : { spec: obj.spec }, wrapper, '');
  for (const p of problems) f.problem(p.path, p.message);
  return problems.length === 0 ? ((value as { spec: T }).spec) : undefined;
}

function scopeOf(meta: Meta, ctx: CompileContext, sel: LabelSelectorSpec | undefined): { scope: PolicyScope; selector?: LabelSelector } {
  const selector = sel ? labelSelector(sel) : undefined;
  const selects = selector !== undefined && !isEmptySelector(selector);
  if (meta.namespace === ctx.installNamespace) return { scope: 'mesh', ...(selects ? { selector } : {}) };
  return selects ? { scope: 'workload', selector } : { scope: 'namespace' };
}

function labelSelector(s: LabelSelectorSpec): LabelSelector {
  return {
    matchLabels: { ...s.matchLabels },
    matchExpressions: (s.matchExpressions ?? []).map((r) => ({ key: r.key, operator: r.operator, values: [...(r.values ?? [])] })),
  };
}

// ---- values -----------------------------------------------------------------------------------------

/** The placement of `*` in a pattern the schema does not check (paths, condition values). */
function checkWildcard(value: string, path: string, f: Findings): boolean {
  if (wildcardAtEdge(value)) return true;
  const stars = value.split('*').length - 1;
  const edges = Number(value.startsWith('*')) + Number(value.endsWith('*'));
  f.problem(path, stars > 1 && stars === edges ? 'only one "*" is allowed' : '"*" may only be the first or last character');
  return false;
}

function identity(id: string, path: string, ctx: CompileContext, f: Findings): string {
  const full = id.startsWith('*') || id.startsWith('spiffe://') ? id : `spiffe://${id}`;
  const rest = full.startsWith('spiffe://') ? full.slice('spiffe://'.length) : undefined;
  const slash = rest?.indexOf('/') ?? -1;
  const trustDomain = rest !== undefined && slash > 0 ? rest.slice(0, slash) : undefined;
  if (trustDomain !== undefined && !trustDomain.includes('*') && trustDomain !== ctx.trustDomain) {
    f.warn(path, `trust domain "${trustDomain}" is not this mesh's ("${ctx.trustDomain}"): only peers with certificates from that trust domain match`);
  }
  return full;
}

function canonicalCidr(text: string, path: string, f: Findings): string {
  const c = parseCidr(text);
  if (!c) {
    f.problem(path, MESSAGES.cidr);
    return text;
  }
  const m = masked(c);
  const out = formatCidr(m);
  if (formatIp(m.bytes) !== formatIp(c.bytes)) f.warn(path, `"${text}" has address bits set past its /${c.prefix} prefix: it means ${out}`);
  return out;
}

function ipBlock(b: IPBlockSpec, path: string, f: Findings): IPBlock {
  const cidr = canonicalCidr(b.cidr, `${path}.cidr`, f);
  const except = (b.except ?? []).map((e, i) => canonicalCidr(e, `${path}.except[${i}]`, f));
  except.forEach((e, i) => {
    if (e === cidr) f.warn(`${path}.except[${i}]`, 'excludes all of cidr: this block matches no address');
  });
  return { cidr, except };
}

function header(h: HeaderMatchSpec): HeaderMatch {
  return { name: h.name.toLowerCase(), values: [...(h.values ?? [])] };
}

// ---- AccessPolicy --------------------------------------------------------------------------------------

function source(s: AccessSource, path: string, ctx: CompileContext, f: Findings): CompiledSource {
  const ids = (list: string[] | undefined, field: string) => (list ?? []).map((id, i) => identity(id, `${path}.${field}[${i}]`, ctx, f));
  (s.namespaces ?? []).forEach((ns, i) => {
    if (!ctx.namespaces.some((n) => n.name === ns)) f.warn(`${path}.namespaces[${i}]`, `there is no namespace "${ns}" (yet)`);
  });
  const out: CompiledSource = {
    identities: ids(s.identities, 'identities'),
    notIdentities: ids(s.notIdentities, 'notIdentities'),
    namespaces: [...(s.namespaces ?? [])],
    notNamespaces: [...(s.notNamespaces ?? [])],
    ipBlocks: (s.ipBlocks ?? []).map((b, i) => ipBlock(b, `${path}.ipBlocks[${i}]`, f)),
    notIpBlocks: (s.notIpBlocks ?? []).map((b, i) => ipBlock(b, `${path}.notIpBlocks[${i}]`, f)),
  };
  if (s.namespaceSelector) {
    const sel = labelSelector(s.namespaceSelector);
    out.selectedNamespaces = ctx.namespaces
      .filter((n) => matchesLabelSelector(sel, n.labels))
      .map((n) => n.name)
      .sort();
    if (out.selectedNamespaces.length === 0) f.warn(`${path}.namespaceSelector`, 'matches no namespace (yet): this entry matches no peer');
  }
  return out;
}

/** What the schema leaves to compile about a path: where "*" is, and no query or fragment. */
function checkPath(p: string, path: string, f: Findings): string {
  if (!p.startsWith('/') && !p.startsWith('*')) f.problem(path, MESSAGES.pathStart);
  checkWildcard(p, path, f);
  if (/[?#]/.test(p)) f.problem(path, 'a path is matched without its query and fragment: remove what follows "?" or "#"');
  return p;
}

function paths(list: string[] | undefined, path: string, f: Findings): string[] {
  return (list ?? []).map((p, i) => checkPath(p, `${path}[${i}]`, f));
}

function target(t: AccessTarget, path: string, f: Findings): CompiledTarget {
  const upper = (l: string[] | undefined) => (l ?? []).map((m) => m.toUpperCase());
  const lower = (l: string[] | undefined) => (l ?? []).map((h) => h.toLowerCase());
  return {
    ports: [...(t.ports ?? [])],
    notPorts: [...(t.notPorts ?? [])],
    methods: upper(t.methods),
    notMethods: upper(t.notMethods),
    paths: paths(t.paths, `${path}.paths`, f),
    notPaths: paths(t.notPaths, `${path}.notPaths`, f),
    hosts: lower(t.hosts),
    notHosts: lower(t.notHosts),
    headers: (t.headers ?? []).map(header),
    notHeaders: (t.notHeaders ?? []).map(header),
  };
}

/** What the schema cannot say per key about a condition's values: checked and normalized here. */
function conditionValue(key: string, v: string, path: string, ctx: CompileContext, f: Findings): string {
  switch (key) {
    case 'source.ip':
    case 'destination.ip': {
      if (v.includes('/')) return canonicalCidr(v, path, f);
      const ip = parseIp(v);
      if (ip) return formatIp(ip);
      f.problem(path, MESSAGES.ipValues);
      return v;
    }
    case 'destination.port':
      return String(Number(v));
    case 'source.principal':
      if (checkWildcard(v, path, f) && !v.includes('*') && !re(IDENTITY).test(v)) f.problem(path, MESSAGES.identity);
      return identity(v, path, ctx, f);
    case 'source.namespace':
      // A pattern's fixed part may be any piece of a name (`team-*`); a whole name is a DNS label.
      if (checkWildcard(v, path, f) && !(v.includes('*') ? /^\*?[-a-z0-9]*\*?$/.test(v) : re(DNS_LABEL).test(v))) {
        f.problem(path, 'a namespace is a lower-case DNS label; one "*" may stand first or last');
      }
      return v;
    case 'request.method':
      if (!re(METHOD).test(v)) f.problem(path, MESSAGES.method);
      return v.toUpperCase();
    case 'request.host':
      if (checkWildcard(v, path, f) && !re(HOST).test(v)) f.problem(path, MESSAGES.host);
      return v.toLowerCase();
    case 'request.path':
      return checkPath(v, path, f);
    default:
      // request.headers[<name>]: any value, as a header value pattern.
      return v;
  }
}

function condition(c: ConditionSpec, path: string, ctx: CompileContext, f: Findings): CompiledCondition {
  // Header names are case-insensitive: the key carries the name lower-cased.
  const key = (c.key.startsWith('request.headers[') ? c.key.toLowerCase() : c.key) as ConditionKey;
  const values = (list: string[] | undefined, field: string) =>
    // `path` of a value: the list entry, e.g. spec.rules[0].when[1].values[0].
    (list ?? []).map((v, i) => conditionValue(c.key, v, `${path}.${field}[${i}]`, ctx, f));
  return { key, values: values(c.values, 'values'), notValues: values(c.notValues, 'notValues') };
}

function needsHttp(t: CompiledTarget): boolean {
  return [t.methods, t.notMethods, t.paths, t.notPaths, t.hosts, t.notHosts, t.headers, t.notHeaders].some((l) => l.length > 0);
}

function rule(r: AccessRule, i: number, ctx: CompileContext, f: Findings): CompiledRule {
  const path = `spec.rules[${i}]`;
  const from = (r.from ?? []).map((s, j) => source(s, `${path}.from[${j}]`, ctx, f));
  const to = (r.to ?? []).map((t, j) => target(t, `${path}.to[${j}]`, f));
  const when = (r.when ?? []).map((c, j) => condition(c, `${path}.when[${j}]`, ctx, f));
  if (from.length === 0 && to.length === 0 && when.length === 0) f.warn(path, 'sets no from, to or when: it matches every connection');
  const l7 = to.some(needsHttp) || when.some((c) => c.key.startsWith('request.'));
  return { name: r.name ?? `rules[${i}]`, from, to, when, l7 };
}

export function compileAccessPolicy(obj: AccessPolicy, ctx: CompileContext): CompileResult<CompiledAccessPolicy> {
  const f = new Findings();
  const meta = readMeta(obj.metadata, f);
  const spec = readSpec<AccessPolicySpec>(obj, accessPolicySchema, f);
  if (!meta || !spec) return f.result<CompiledAccessPolicy>(undefined);
  const action = spec.action ?? 'ALLOW';
  const rules = (spec.rules ?? []).map((r, i) => rule(r, i, ctx, f));
  if (rules.length === 0 && action !== 'ALLOW') f.warn('spec.rules', `a ${action} policy without rules matches nothing: it has no effect`);
  const { createdAt: _createdAt, ...head } = meta;
  return f.result({ ...head, ...scopeOf(meta, ctx, spec.selector), action, rules });
}

// ---- MeshTLSPolicy -------------------------------------------------------------------------------------

export function compileMeshTLSPolicy(obj: MeshTLSPolicy, ctx: CompileContext): CompileResult<CompiledMeshTLSPolicy> {
  const f = new Findings();
  const meta = readMeta(obj.metadata, f);
  const spec = readSpec<MeshTLSPolicySpec>(obj, meshTLSPolicySchema, f);
  if (!meta || !spec) return f.result<CompiledMeshTLSPolicy>(undefined);
  const ports = (spec.ports ?? []).map((p) => ({ port: p.port, mode: p.mode }));
  ports.forEach((p, i) => {
    if (p.mode === spec.mode) f.warn(`spec.ports[${i}].mode`, `the same as spec.mode (${spec.mode}): this override changes nothing`);
  });
  return f.result({ ...meta, ...scopeOf(meta, ctx, spec.selector), mode: spec.mode, ports });
}
