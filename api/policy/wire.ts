// Structural checks for compiled policies as they arrive at an agent over the sync stream (and
// from its checkpoint). The controller compiled and validated them (api/policy/compile.ts); here we
// only make sure that what arrived has the shape and enums the evaluator relies on, so that a
// controller from another release, or a corrupted checkpoint, is refused with a path instead of
// crashing the evaluator later. No semantic re-validation: that is the controller's job.
//
// agent-sync.ts imports this module and this module imports ProtocolError from it: the cycle is
// safe because ProtocolError is only used when a check runs, never while modules load.
import { ProtocolError } from '../agent-sync.ts';
import { CONDITION_KEYS as SCHEMA_CONDITION_KEYS } from './schema.ts';
import type {
  CompiledAccessPolicy,
  CompiledCondition,
  CompiledMeshTLSPolicy,
  CompiledRule,
  CompiledSource,
  CompiledTarget,
  HeaderMatch,
  IPBlock,
  LabelSelector,
} from './model.ts';

type Obj = Record<string, unknown>;

const ACTIONS: readonly unknown[] = ['ALLOW', 'DENY', 'AUDIT'];
const MODES: readonly unknown[] = ['STRICT', 'PERMISSIVE'];
const SCOPES: readonly unknown[] = ['mesh', 'namespace', 'workload'];
const OPERATORS: readonly unknown[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
const CONDITION_KEYS: readonly unknown[] = SCHEMA_CONDITION_KEYS;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function need(cond: boolean, path: string, what: string): asserts cond {
  if (!cond) throw new ProtocolError(`${path}: ${what}`);
}

function obj(v: unknown, path: string): Obj {
  need(isObj(v), path, 'must be an object');
  return v;
}

function list<T>(v: unknown, path: string, check: (item: unknown, path: string) => T): T[] {
  need(Array.isArray(v), path, 'must be a list');
  return v.map((item: unknown, i) => check(item, `${path}[${i}]`));
}

function str(v: unknown, path: string): string {
  need(isStr(v), path, 'must be a string');
  return v;
}

const strs = (v: unknown, path: string): string[] => list(v, path, str);

function portRef(v: unknown, path: string): number | string {
  need(isPort(v) || (isStr(v) && v !== ''), path, 'must be a port number (1-65535) or a port name');
  return v;
}

function selector(v: unknown, path: string): LabelSelector {
  const s = obj(v, path);
  const labels = obj(s.matchLabels, `${path}.matchLabels`);
  for (const [k, val] of Object.entries(labels)) str(val, `${path}.matchLabels[${JSON.stringify(k)}]`);
  list(s.matchExpressions, `${path}.matchExpressions`, (e, p) => {
    const r = obj(e, p);
    str(r.key, `${p}.key`);
    need(OPERATORS.includes(r.operator), `${p}.operator`, 'must be In, NotIn, Exists or DoesNotExist');
    strs(r.values, `${p}.values`);
  });
  return s as unknown as LabelSelector;
}

function ipBlock(v: unknown, path: string): IPBlock {
  const b = obj(v, path);
  str(b.cidr, `${path}.cidr`);
  strs(b.except, `${path}.except`);
  return b as unknown as IPBlock;
}

function header(v: unknown, path: string): HeaderMatch {
  const h = obj(v, path);
  str(h.name, `${path}.name`);
  strs(h.values, `${path}.values`);
  return h as unknown as HeaderMatch;
}

function source(v: unknown, path: string): CompiledSource {
  const s = obj(v, path);
  for (const f of ['identities', 'notIdentities', 'namespaces', 'notNamespaces'] as const) strs(s[f], `${path}.${f}`);
  if (s.selectedNamespaces !== undefined) strs(s.selectedNamespaces, `${path}.selectedNamespaces`);
  list(s.ipBlocks, `${path}.ipBlocks`, ipBlock);
  list(s.notIpBlocks, `${path}.notIpBlocks`, ipBlock);
  return s as unknown as CompiledSource;
}

function target(v: unknown, path: string): CompiledTarget {
  const t = obj(v, path);
  list(t.ports, `${path}.ports`, portRef);
  list(t.notPorts, `${path}.notPorts`, portRef);
  for (const f of ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts'] as const) strs(t[f], `${path}.${f}`);
  list(t.headers, `${path}.headers`, header);
  list(t.notHeaders, `${path}.notHeaders`, header);
  return t as unknown as CompiledTarget;
}

function condition(v: unknown, path: string): CompiledCondition {
  const c = obj(v, path);
  need(CONDITION_KEYS.includes(c.key) || (isStr(c.key) && /^request\.headers\[[^\]]+\]$/.test(c.key)), `${path}.key`, `unknown condition key ${JSON.stringify(c.key)}`);
  strs(c.values, `${path}.values`);
  strs(c.notValues, `${path}.notValues`);
  return c as unknown as CompiledCondition;
}

function rule(v: unknown, path: string): CompiledRule {
  const r = obj(v, path);
  str(r.name, `${path}.name`);
  list(r.from, `${path}.from`, source);
  list(r.to, `${path}.to`, target);
  list(r.when, `${path}.when`, condition);
  need(typeof r.l7 === 'boolean', `${path}.l7`, 'must be a boolean');
  return r as unknown as CompiledRule;
}

/** The fields both compiled kinds share: identity, generation, scope and selector. */
function policyHead(p: Obj, path: string): void {
  for (const f of ['key', 'namespace', 'name'] as const) str(p[f], `${path}.${f}`);
  need(isCount(p.generation), `${path}.generation`, 'must be a non-negative integer');
  need(SCOPES.includes(p.scope), `${path}.scope`, 'must be mesh, namespace or workload');
  if (p.selector !== undefined) selector(p.selector, `${path}.selector`);
  need(p.scope !== 'workload' || p.selector !== undefined, `${path}.selector`, 'is required for scope workload');
}

export function checkCompiledAccessPolicy(v: unknown, path: string): CompiledAccessPolicy {
  const p = obj(v, path);
  policyHead(p, path);
  need(ACTIONS.includes(p.action), `${path}.action`, 'must be ALLOW, DENY or AUDIT');
  list(p.rules, `${path}.rules`, rule);
  return p as unknown as CompiledAccessPolicy;
}

export function checkCompiledMeshTLSPolicy(v: unknown, path: string): CompiledMeshTLSPolicy {
  const p = obj(v, path);
  policyHead(p, path);
  need(MODES.includes(p.mode), `${path}.mode`, 'must be STRICT or PERMISSIVE');
  list(p.ports, `${path}.ports`, (e, ep) => {
    const o = obj(e, ep);
    need(isPort(o.port), `${ep}.port`, 'must be a port number (1-65535)');
    need(MODES.includes(o.mode), `${ep}.mode`, 'must be STRICT or PERMISSIVE');
  });
  str(p.createdAt, `${path}.createdAt`);
  return p as unknown as CompiledMeshTLSPolicy;
}
