// Content digests for resuming agent sync across controller processes (the `digests` feature).
//
// Revisions are numbered per epoch, and a restarted controller or another replica has an epoch of
// its own, so an agent coming back to it cannot say "I am at revision N". It can say what it
// holds: for each kind, its resources hashed into buckets by key, and one digest per bucket over
// the keys and content hashes in it. The controller computes the same buckets over its view of the
// node and sends back only the buckets that differ, whole, telling the agent to drop whatever else
// it holds in them. Equal state costs one empty message instead of a snapshot.
//
// Content, not revisions, is compared, so both sides must hash the same bytes: canonical JSON
// (object keys sorted), which does not depend on which controller version built the object or in
// what order its fields were set. A bucket digest is 64 bits of SHA-256 over sorted entries; a
// wrong "equal" needs a SHA-256 collision on purpose-built content, not luck.
import { createHash } from 'node:crypto';
import type { Resource, ResourceKind } from './agent-sync.ts';

/** What an agent holds of one kind, in its hello. */
export interface KindDigest {
  /** A power of two, 1 to MAX_DIGEST_BUCKETS: how keys were spread. */
  buckets: number;
  /** base64 of `buckets` × 8 bytes: bucket i's digest at 8i. An empty bucket is 8 zero bytes. */
  sums: string;
}

/** Every kind the agent holds (a kind left out: it holds none of it). */
export type HelloDigests = Partial<Record<ResourceKind, KindDigest>>;

/** In a resume delta: the buckets the agent must make exactly equal to what the delta upserts. */
export type ReplacedBuckets = Partial<Record<ResourceKind, { buckets: number; ids: number[] }>>;

export const DIGEST_BYTES = 8;
/** Keeps a hello with every kind under the controller's line limit (5 × 11 KB of base64). */
export const MAX_DIGEST_BUCKETS = 1024;

/** About one resource per bucket: a changed resource costs itself and, now and then, a neighbour. */
export function bucketsFor(count: number): number {
  let b = 1;
  while (b < count && b < MAX_DIGEST_BUCKETS) b *= 2;
  return b;
}

export function validBuckets(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= MAX_DIGEST_BUCKETS && ((n as number) & ((n as number) - 1)) === 0;
}

/** FNV-1a over the key's UTF-16 units: cheap, stable, and only spreads keys (no secrecy needed). */
export function bucketOf(key: string, buckets: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & (buckets - 1);
}

/** JSON with object keys sorted at every level; undefined fields left out, as JSON.stringify does. */
export function canonicalJson(v: unknown): string {
  // Loops and concatenation rather than map/filter/join: a 10,000-pod store is hashed at start-up.
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      const x: unknown = v[i];
      out += x === undefined ? 'null' : canonicalJson(x);
    }
    return `${out}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${typeof x === 'string' ? JSON.stringify(x) : canonicalJson(x)}`;
    first = false;
  }
  return `${out}}`;
}

/** The content hash of one resource's value (the kind is implied by which digest it goes into). */
export function contentHash(value: Resource['value']): string {
  return createHash('sha256').update(canonicalJson(value)).digest('base64');
}

/** Bucket digests over (key, content hash) entries. */
export function digestOf(entries: Iterable<readonly [string, string]>, buckets: number): Buffer {
  const members: [string, string][][] = Array.from({ length: buckets }, () => []);
  for (const [key, hash] of entries) (members[bucketOf(key, buckets)] as [string, string][]).push([key, hash]);
  return sumsOf(members);
}

/** Bucket digests when the entries are already grouped by bucket. */
export function sumsOf(members: readonly (readonly (readonly [string, string])[])[]): Buffer {
  const out = Buffer.alloc(members.length * DIGEST_BYTES);
  members.forEach((m, i) => {
    if (m.length === 0) return;
    const h = createHash('sha256');
    for (const [key, hash] of [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`${key}\n${hash}\n`);
    h.digest().copy(out, i * DIGEST_BYTES, 0, DIGEST_BYTES);
  });
  return out;
}

/** The sums of a hello's digest, or undefined when they do not fit its bucket count. */
export function decodeSums(d: KindDigest): Buffer | undefined {
  const b = Buffer.from(d.sums, 'base64');
  return b.length === d.buckets * DIGEST_BYTES ? b : undefined;
}
