// AccessPolicies compiled for matching: every pattern, CIDR and port list turned into the form the
// data path tests cheaply, and each rule's decision built once. The matching semantics are those
// in api/policy/model.ts (Istio's): a rule matches when `from` is empty or one entry matches, `to`
// is empty or one entry matches, and every `when` condition matches; an entry matches when every
// field it sets matches; a field matches when one of its values does, a `not…` field when none does.
//
// Compiled matchers are cached per policy object: the agent rebuilds its index whenever its store
// changes, and a policy that did not change is the same object and is not compiled again.
import type {
  CompiledAccessPolicy,
  CompiledCondition,
  CompiledRule,
  CompiledSource,
  CompiledTarget,
  HeaderMatch,
  IPBlock,
  PolicyAction,
} from '../../api/policy/model.ts';
import type { ConnectionContext, RequestAttrs } from './attributes.ts';
import { decision, type AuditRecord, type Decision } from './decision.ts';
import { cidrContains, parseCidr, type Cidr, type IpAddress } from './ip.ts';
import { compilePatterns, matchesPattern, type Pattern } from './pattern.ts';

export interface BlockMatcher {
  /** undefined when the CIDR does not parse: the block then contains nothing. */
  readonly cidr: Cidr | undefined;
  readonly except: readonly (Cidr | undefined)[];
}

/** Unconstrained fields are null, so that every matcher has one shape. */
export interface SourceMatcher {
  readonly identities: Pattern | null;
  readonly notIdentities: Pattern | null;
  readonly namespaces: Pattern | null;
  readonly notNamespaces: Pattern | null;
  readonly selectedNamespaces: ReadonlySet<string> | null;
  readonly ipBlocks: readonly BlockMatcher[] | null;
  readonly notIpBlocks: readonly BlockMatcher[] | null;
}

export interface PortRefs {
  readonly numbers: readonly number[];
  readonly names: readonly string[];
}

export interface HeaderMatcher {
  readonly name: string;
  /** null: the header only needs to be present. */
  readonly values: Pattern | null;
}

export interface TargetMatcher {
  readonly ports: PortRefs | null;
  readonly notPorts: PortRefs | null;
  /** True when the entry sets any HTTP field. */
  readonly l7: boolean;
  readonly methods: Pattern | null;
  readonly notMethods: Pattern | null;
  readonly paths: Pattern | null;
  readonly notPaths: Pattern | null;
  readonly hosts: Pattern | null;
  readonly notHosts: Pattern | null;
  readonly headers: readonly HeaderMatcher[] | null;
  readonly notHeaders: readonly HeaderMatcher[] | null;
}

/** What a `when` condition tests, by where its value comes from. */
export type ConditionSubject = 'source.ip' | 'source.principal' | 'source.namespace' | 'destination.ip' | 'destination.port' | 'request.method' | 'request.path' | 'request.host' | 'request.header';

export interface ConditionMatcher {
  readonly subject: ConditionSubject;
  /** True for `request.*` keys. */
  readonly l7: boolean;
  /** The header name for `request.headers[name]`, lower-case. */
  readonly header: string;
  /** Value patterns (principal, namespace, request.*); null = unconstrained. */
  readonly values: Pattern | null;
  readonly notValues: Pattern | null;
  /** Address conditions: values as CIDRs (a bare address is a /32 or /128). */
  readonly cidrs: readonly (Cidr | undefined)[] | null;
  readonly notCidrs: readonly (Cidr | undefined)[] | null;
  /** `destination.port`: values as numbers. */
  readonly ports: ReadonlySet<number> | null;
  readonly notPorts: ReadonlySet<number> | null;
}

export interface RuleMatcher {
  readonly name: string;
  readonly policy: PolicyMatcher;
  readonly from: readonly SourceMatcher[];
  readonly to: readonly TargetMatcher[];
  readonly when: readonly ConditionMatcher[];
  /** Some part of the rule needs HTTP (the compiled flag, or any L7 field or condition). */
  readonly l7: boolean;
  /** The decision this rule makes when it matches (ALLOW and DENY rules). */
  readonly decision: Decision;
  /** The record this rule leaves when it matches (AUDIT rules). */
  readonly audit: AuditRecord;
}

export interface PolicyMatcher {
  readonly key: string;
  readonly action: PolicyAction;
  readonly source: CompiledAccessPolicy;
  readonly rules: readonly RuleMatcher[];
}

const compiled = new WeakMap<CompiledAccessPolicy, PolicyMatcher>();

export function compileAccessPolicyMatcher(p: CompiledAccessPolicy): PolicyMatcher {
  let m = compiled.get(p);
  if (!m) {
    const rules: RuleMatcher[] = [];
    m = { key: p.key, action: p.action, source: p, rules };
    for (const r of p.rules) rules.push(compileRule(r, m));
    compiled.set(p, m);
  }
  return m;
}

function compileRule(r: CompiledRule, policy: PolicyMatcher): RuleMatcher {
  const to = r.to.map(compileTarget);
  const when = r.when.map(compileCondition);
  const verdict = policy.action === 'DENY' ? 'deny' : 'allow';
  const verb = policy.action === 'DENY' ? 'denied' : 'allowed';
  return {
    name: r.name,
    policy,
    from: r.from.map(compileSource),
    to,
    when,
    l7: r.l7 || to.some((t) => t.l7) || when.some((c) => c.l7),
    decision: decision(verdict, `${verb} by ${policy.action} policy ${policy.key} rule ${r.name}`, policy.key, r.name),
    audit: Object.freeze({ policy: policy.key, rule: r.name }),
  };
}

const patterns = (values: readonly string[], lowerCase = false): Pattern | null => (values.length === 0 ? null : compilePatterns(values, lowerCase));

function blocks(list: readonly IPBlock[]): BlockMatcher[] | null {
  return list.length === 0 ? null : list.map((b) => ({ cidr: parseCidr(b.cidr), except: b.except.map(parseCidr) }));
}

function compileSource(s: CompiledSource): SourceMatcher {
  return {
    identities: patterns(s.identities),
    notIdentities: patterns(s.notIdentities),
    namespaces: patterns(s.namespaces),
    notNamespaces: patterns(s.notNamespaces),
    // Present means "constrained", even when empty: a selector that matched no namespace admits none.
    selectedNamespaces: s.selectedNamespaces === undefined ? null : new Set(s.selectedNamespaces),
    ipBlocks: blocks(s.ipBlocks),
    notIpBlocks: blocks(s.notIpBlocks),
  };
}

function portRefs(list: readonly (number | string)[]): PortRefs | null {
  if (list.length === 0) return null;
  return { numbers: list.filter((p) => typeof p === 'number'), names: list.filter((p) => typeof p === 'string') };
}

function headers(list: readonly HeaderMatch[]): HeaderMatcher[] | null {
  return list.length === 0 ? null : list.map((h) => ({ name: h.name.toLowerCase(), values: patterns(h.values) }));
}

function compileTarget(t: CompiledTarget): TargetMatcher {
  const m = {
    ports: portRefs(t.ports),
    notPorts: portRefs(t.notPorts),
    methods: patterns(t.methods),
    notMethods: patterns(t.notMethods),
    paths: patterns(t.paths),
    notPaths: patterns(t.notPaths),
    hosts: patterns(t.hosts, true),
    notHosts: patterns(t.notHosts, true),
    headers: headers(t.headers),
    notHeaders: headers(t.notHeaders),
  };
  const l7 = !!(m.methods ?? m.notMethods ?? m.paths ?? m.notPaths ?? m.hosts ?? m.notHosts ?? m.headers ?? m.notHeaders);
  return { ...m, l7 };
}

const HEADER_KEY = /^request\.headers\[(.+)\]$/;

function compileCondition(c: CompiledCondition): ConditionMatcher {
  const header = HEADER_KEY.exec(c.key)?.[1];
  const subject: ConditionSubject = header !== undefined ? 'request.header' : (c.key as ConditionSubject);
  const isAddress = subject === 'source.ip' || subject === 'destination.ip';
  const isPort = subject === 'destination.port';
  const cidrs = (values: readonly string[]) => (values.length === 0 ? null : values.map(parseCidr));
  const ports = (values: readonly string[]) => (values.length === 0 ? null : new Set(values.map((v) => (/^[0-9]{1,5}$/.test(v) ? Number(v) : -1))));
  return {
    subject,
    l7: subject.startsWith('request.'),
    header: header?.toLowerCase() ?? '',
    values: isAddress || isPort ? null : patterns(c.values, subject === 'request.host'),
    notValues: isAddress || isPort ? null : patterns(c.notValues, subject === 'request.host'),
    cidrs: isAddress ? cidrs(c.values) : null,
    notCidrs: isAddress ? cidrs(c.notValues) : null,
    ports: isPort ? ports(c.values) : null,
    notPorts: isPort ? ports(c.notValues) : null,
  };
}

// ---- matching ----

function inAny(list: readonly (Cidr | undefined)[], ip: IpAddress): boolean {
  for (const c of list) if (c !== undefined && cidrContains(c, ip)) return true;
  return false;
}

function inBlock(b: BlockMatcher, ip: IpAddress): boolean {
  return b.cidr !== undefined && cidrContains(b.cidr, ip) && !inAny(b.except, ip);
}

function inAnyBlock(list: readonly BlockMatcher[], ip: IpAddress | undefined): boolean {
  if (ip === undefined) return false;
  for (const b of list) if (inBlock(b, ip)) return true;
  return false;
}

export function sourceMatches(s: SourceMatcher, ctx: ConnectionContext): boolean {
  const src = ctx.source;
  if (s.identities !== null && !matchesPattern(s.identities, src.principal)) return false;
  if (s.notIdentities !== null && matchesPattern(s.notIdentities, src.principal)) return false;
  if (s.namespaces !== null && !matchesPattern(s.namespaces, src.namespace)) return false;
  if (s.notNamespaces !== null && matchesPattern(s.notNamespaces, src.namespace)) return false;
  if (s.selectedNamespaces !== null && (src.namespace === undefined || !s.selectedNamespaces.has(src.namespace))) return false;
  if (s.ipBlocks !== null && !inAnyBlock(s.ipBlocks, ctx.sourceIp())) return false;
  if (s.notIpBlocks !== null && inAnyBlock(s.notIpBlocks, ctx.sourceIp())) return false;
  return true;
}

function refersTo(refs: PortRefs, port: number, names: readonly string[]): boolean {
  if (refs.numbers.includes(port)) return true;
  for (const n of refs.names) if (names.includes(n)) return true;
  return false;
}

/** The L4 half of a `to` entry: its ports, given the names this port goes by on the destination. */
export function targetPortMatches(t: TargetMatcher, port: number, names: readonly string[]): boolean {
  if (t.ports !== null && !refersTo(t.ports, port, names)) return false;
  if (t.notPorts !== null && refersTo(t.notPorts, port, names)) return false;
  return true;
}

function headerMatches(h: HeaderMatcher, req: RequestAttrs): boolean {
  const v = req.header(h.name);
  return h.values === null ? v !== undefined : matchesPattern(h.values, v);
}

function anyHeader(list: readonly HeaderMatcher[], req: RequestAttrs): boolean {
  for (const h of list) if (headerMatches(h, req)) return true;
  return false;
}

/** `headers` is a conjunction, as in HTTPRoute: every listed header must match. */
function allHeaders(list: readonly HeaderMatcher[], req: RequestAttrs): boolean {
  for (const h of list) if (!headerMatches(h, req)) return false;
  return true;
}

/** The L7 half of a `to` entry. */
export function targetRequestMatches(t: TargetMatcher, req: RequestAttrs): boolean {
  if (t.methods !== null && !matchesPattern(t.methods, req.method)) return false;
  if (t.notMethods !== null && matchesPattern(t.notMethods, req.method)) return false;
  if (t.paths !== null && !matchesPattern(t.paths, req.path)) return false;
  if (t.notPaths !== null && matchesPattern(t.notPaths, req.path)) return false;
  if (t.hosts !== null && !matchesPattern(t.hosts, req.host)) return false;
  if (t.notHosts !== null && matchesPattern(t.notHosts, req.host)) return false;
  if (t.headers !== null && !allHeaders(t.headers, req)) return false;
  if (t.notHeaders !== null && anyHeader(t.notHeaders, req)) return false;
  return true;
}

function valueCondition(c: ConditionMatcher, value: string | undefined): boolean {
  if (c.values !== null && !matchesPattern(c.values, value)) return false;
  if (c.notValues !== null && matchesPattern(c.notValues, value)) return false;
  return true;
}

function addressCondition(c: ConditionMatcher, ips: readonly IpAddress[]): boolean {
  if (c.cidrs !== null) {
    let found = false;
    for (const ip of ips) if (inAny(c.cidrs, ip)) found = true;
    if (!found) return false;
  }
  if (c.notCidrs !== null) for (const ip of ips) if (inAny(c.notCidrs, ip)) return false;
  return true;
}

function sourceAddressCondition(c: ConditionMatcher, ip: IpAddress | undefined): boolean {
  if (c.cidrs !== null && (ip === undefined || !inAny(c.cidrs, ip))) return false;
  if (c.notCidrs !== null && ip !== undefined && inAny(c.notCidrs, ip)) return false;
  return true;
}

/** `destination.port` conditions depend only on the port: decided once per planned port. */
export function portConditionMatches(c: ConditionMatcher, port: number): boolean {
  if (c.ports !== null && !c.ports.has(port)) return false;
  if (c.notPorts !== null && c.notPorts.has(port)) return false;
  return true;
}

/** A condition on the connection (not `request.*`, not `destination.port`). */
export function connectionConditionMatches(c: ConditionMatcher, ctx: ConnectionContext): boolean {
  switch (c.subject) {
    case 'source.principal':
      return valueCondition(c, ctx.source.principal);
    case 'source.namespace':
      return valueCondition(c, ctx.source.namespace);
    case 'source.ip':
      return sourceAddressCondition(c, ctx.sourceIp());
    case 'destination.ip':
      return addressCondition(c, ctx.destinationIps());
    default:
      // Planning keeps other subjects out of the connection's conditions; refuse rather than guess.
      return false;
  }
}

/** A `request.*` condition. */
export function requestConditionMatches(c: ConditionMatcher, req: RequestAttrs): boolean {
  switch (c.subject) {
    case 'request.method':
      return valueCondition(c, req.method);
    case 'request.path':
      return valueCondition(c, req.path);
    case 'request.host':
      return valueCondition(c, req.host);
    case 'request.header':
      return valueCondition(c, req.header(c.header));
    default:
      return false;
  }
}
