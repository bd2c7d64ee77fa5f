// Validates a value against a CRD schema from schema.ts the way the API server would: types,
// enums, patterns, bounds, required and unknown fields, list keys, and every CEL rule through its
// TypeScript twin. It returns every problem (not just the first) and the value with the schema's
// defaults filled in.
//
// Why the controller does this although the API server already has: the CRD installed in a
// cluster may be older (or newer) than the controller, or edited by hand, and a policy that means
// something other than what the controller thinks it means must never be enforced.
import { TWIN, re } from './schema.ts';
import type { Schema } from './schema.ts';
import type { PolicyProblem } from './model.ts';

export interface Validated {
  problems: PolicyProblem[];
  /** The value with defaults applied (meaningful only when there are no problems). */
  value: unknown;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);
/**
 * Lengths as JSON Schema counts them: in characters (code points), not UTF-16 units. A string has
 * at most as many code points as units, so only a long one needs counting.
 */
const longerThan = (s: string, max: number): boolean => s.length > max && [...s].length > max;
const field = (path: string, k: string): string => (path ? `${path}.${k}` : k);

export function validate(value: unknown, schema: Schema, path: string): Validated {
  const problems: PolicyProblem[] = [];
  const out = walk(value, schema, path, problems);
  return { problems, value: out };
}

function walk(v: unknown, s: Schema, path: string, problems: PolicyProblem[]): unknown {
  const before = problems.length;
  const add = (message: string, at = path) => problems.push({ path: at, message });
  let out = v;

  if (s['x-kubernetes-int-or-string']) {
    if (!Number.isInteger(v) && typeof v !== 'string') add(`must be an integer or a string, not ${show(v)}`);
  } else {
    switch (s.type) {
      case 'object':
        if (!isObj(v)) add(`must be an object, not ${show(v)}`);
        else out = walkObject(v, s, path, problems);
        break;
      case 'array':
        if (!Array.isArray(v)) add(`must be a list, not ${show(v)}`);
        else out = walkArray(v, s, path, problems);
        break;
      case 'string':
        if (typeof v !== 'string') add(`must be a string, not ${show(v)}`);
        break;
      case 'integer':
        if (!Number.isSafeInteger(v)) add(`must be an integer, not ${show(v)}`);
        break;
      case 'boolean':
        if (typeof v !== 'boolean') add(`must be true or false, not ${show(v)}`);
        break;
      default:
        break;
    }
  }
  if (problems.length > before) return out;

  if (typeof v === 'string') {
    if (s.enum && !s.enum.includes(v)) add(`${show(v)} is not one of ${s.enum.join(', ')}`);
    if (s.minLength !== undefined && !longerThan(v, s.minLength - 1)) add(s.minLength === 1 ? 'must not be empty' : `must be at least ${s.minLength} characters`);
    if (s.maxLength !== undefined && longerThan(v, s.maxLength)) add(`must be at most ${s.maxLength} characters`);
    if (s.pattern !== undefined && !re(s.pattern).test(v)) add(`${show(v)} should match '${s.pattern}'`);
  }
  if (typeof v === 'number') {
    if (s.minimum !== undefined && v < s.minimum) add(`must be at least ${s.minimum}, not ${v}`);
    if (s.maximum !== undefined && v > s.maximum) add(`must be at most ${s.maximum}, not ${v}`);
  }
  if (problems.length > before) return out;

  // A CEL rule sees typed, defaulted values: run the twins only on a node that is sound.
  for (const r of s['x-kubernetes-validations'] ?? []) {
    if (!r[TWIN](out as never)) add(r.message, `${path}${r.fieldPath ?? ''}`);
  }
  return out;
}

function walkObject(v: Record<string, unknown>, s: Schema, path: string, problems: PolicyProblem[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const keys = Object.keys(v);
  if (s.maxProperties !== undefined && keys.length > s.maxProperties) problems.push({ path, message: `must have at most ${s.maxProperties} entries` });
  if (s.properties) {
    for (const k of keys) {
      if (!(k in s.properties)) problems.push({ path: field(path, k), message: `unknown field "${k}"` });
    }
    for (const [k, ps] of Object.entries(s.properties)) {
      if (v[k] !== undefined) out[k] = walk(v[k], ps, field(path, k), problems);
      else if (ps.default !== undefined) out[k] = walk(structuredClone(ps.default), ps, field(path, k), problems);
      else if (s.required?.includes(k)) problems.push({ path: field(path, k), message: 'is required' });
    }
  } else if (s.additionalProperties) {
    for (const k of keys) out[k] = walk(v[k], s.additionalProperties, `${path}[${show(k)}]`, problems);
  }
  return out;
}

function walkArray(v: unknown[], s: Schema, path: string, problems: PolicyProblem[]): unknown[] {
  if (s.minItems !== undefined && v.length < s.minItems) problems.push({ path, message: `must have at least ${s.minItems} items` });
  if (s.maxItems !== undefined && v.length > s.maxItems) problems.push({ path, message: `must have at most ${s.maxItems} items, not ${v.length}` });
  const items = s.items;
  const out = items ? v.map((x, i) => walk(x, items, `${path}[${i}]`, problems)) : v;
  const listKeys = s['x-kubernetes-list-type'] === 'map' ? (s['x-kubernetes-list-map-keys'] ?? []) : undefined;
  if (listKeys || s['x-kubernetes-list-type'] === 'set') {
    // A list-map's entries are unique by their keys, a set's by value.
    const seen = new Set<string>();
    out.forEach((x, i) => {
      const id = listKeys && isObj(x) ? listKeys.map((k) => `${k} ${show(x[k])}`).join(', ') : show(x);
      if (seen.has(id)) problems.push({ path: `${path}[${i}]`, message: `duplicate entry (${id})` });
      seen.add(id);
    });
  }
  return out;
}
