// The revisioned store: the one copy of what agents see, numbered so that they can resume.
//
// - One epoch per store (per controller process): revisions mean nothing across epochs.
// - Writers stage upserts and removes at will; a short debounce turns a burst (a rollout, the
//   initial list, a namespace relabel touching every pod) into one revision instead of thousands.
//   A staged write equal to what the store holds is dropped, so a resync costs no revision.
// - A bounded log of the refs each revision touched lets an agent that comes back at
//   (epoch, revision) get only what changed since; once its revision has fallen out of the log it
//   gets a snapshot. The log keeps refs, not values: a delta always carries the current values.
// - An agent from another epoch (a restarted controller, another replica) that says what it holds
//   by content (api/agent-sync-digest.ts) gets a resume delta: only the buckets that differ.
// - What an agent is sent is its node's view (node-scope.ts): every workload, service and the
//   mesh config, and only the policies that select a meshed workload on its node. snapshot() and
//   delta() are the whole store; snapshotFor() and deltaFor() are what the sync streams send.
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { MeshConfig, Resource, ResourceKind, ResourceRef, Service, SyncMessage, Workload } from '../../api/agent-sync.ts';
import { bucketOf, contentHash, decodeSums, sumsOf, DIGEST_BYTES, type HelloDigests, type ReplacedBuckets } from '../../api/agent-sync-digest.ts';
import { jsonEqual } from './equal.ts';
import { NodeScope, isPolicy, type Change } from './node-scope.ts';

export type SnapshotMessage = Extract<SyncMessage, { type: 'snapshot' }>;
export type DeltaMessage = Extract<SyncMessage, { type: 'delta' }>;

export interface StoreOptions {
  config: MeshConfig;
  /** Defaults to 16 random hex characters. */
  epoch?: string;
  /** Revisions the change log keeps. */
  logRevisions?: number;
  /** Refs, summed over all kept revisions, the change log keeps (bounds memory after a burst). */
  logRefs?: number;
  /** Quiet time after the last staged write before it is committed. 0 commits on the next tick. */
  debounceMs?: number;
  /** Longest a staged write waits under a continuous stream of writes. */
  maxDelayMs?: number;
  /** Where mesh-wide policies live: they select workloads in every namespace. */
  installNamespace?: string;
}

export const STORE_DEFAULTS = { logRevisions: 1024, logRefs: 65_536, debounceMs: 10, maxDelayMs: 100 } as const;

export type CommitListener = (revision: number) => void;

/**
 * Messages at least this long go compressed to agents that take it (api/agent-sync.ts, GzipLine):
 * a policy delta is a few hundred bytes and would gain nothing; a snapshot is megabytes.
 */
export const GZIP_MIN_BYTES = 16 * 1024;
// Level 3: within 5 % of level 6's size on a snapshot, in about half the time.
const GZIP_LEVEL = 3;
const gzip64 = (b: Buffer): string => gzipSync(b, { level: GZIP_LEVEL }).toString('base64');
const GZIP_TAIL = gzip64(Buffer.from(']}\n'));

interface LogEntry {
  revision: number;
  refs: string[];
  config: boolean;
}

type RefKey = string;

export function refKey(ref: ResourceRef): RefKey {
  return `${ref.kind}/${ref.key}`;
}

function refOf(key: RefKey): ResourceRef {
  const slash = key.indexOf('/');
  return { kind: key.slice(0, slash) as ResourceRef['kind'], key: key.slice(slash + 1) };
}

export class RevisionedStore {
  readonly epoch: string;
  readonly #options: Required<Omit<StoreOptions, 'config' | 'epoch' | 'installNamespace'>>;
  readonly #scope: NodeScope;
  #revision = 0;
  #config: MeshConfig;
  readonly #resources = new Map<RefKey, Resource>();
  // The revision that last changed each resource: what an agent must have ACKed to hold it.
  readonly #changedAt = new Map<RefKey, number>();
  // Ring of the most recent revisions; #log[0] is the oldest.
  #log: LogEntry[] = [];
  #logRefs = 0;
  // Deltas are computable from any base >= #floor (0 until the log first drops an entry).
  #floor = 0;
  readonly #staged = new Map<RefKey, Resource | null>();
  #stagedConfig: MeshConfig | undefined;
  #firstStagedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<CommitListener>();
  // Messages built for the current revision, shared by every agent that asks for the same thing.
  #snapshot: SnapshotMessage | undefined;
  readonly #deltas = new Map<number, DeltaMessage>();
  // The same, per node view: keyed by what differs between nodes (the policies), so that nodes
  // with the same view share one message object and one serialization.
  #shared: { nonPolicy: Resource[]; body: Buffer; gzip?: Buffer } | undefined;
  readonly #nodeSnapshots = new Map<string, SnapshotMessage>();
  readonly #nodeDeltas = new Map<string, DeltaMessage>();
  readonly #snapshotPolicies = new WeakMap<SnapshotMessage, Resource[]>();
  readonly #lines = new WeakMap<SyncMessage, Buffer[]>();
  readonly #gzipLines = new WeakMap<SyncMessage, Buffer[]>();
  readonly #deltaSets = new WeakMap<DeltaMessage, Map<RefKey, { had: ReadonlySet<string>; has: ReadonlySet<string> }>>();
  // Content hash of each committed resource, for resume by digest.
  readonly #hashes = new Map<RefKey, string>();
  // Bucket members and sums of a mesh-wide kind at the current revision, by `${kind}/${buckets}`.
  readonly #buckets = new Map<string, { members: [RefKey, string][][]; sums: Buffer }>();
  readonly #values = new Map<ResourceKind, Resource['value'][]>();
  #closed = false;

  constructor(options: StoreOptions) {
    this.epoch = options.epoch ?? randomBytes(8).toString('hex');
    this.#config = { ...options.config };
    this.#options = {
      logRevisions: options.logRevisions ?? STORE_DEFAULTS.logRevisions,
      logRefs: options.logRefs ?? STORE_DEFAULTS.logRefs,
      debounceMs: options.debounceMs ?? STORE_DEFAULTS.debounceMs,
      maxDelayMs: options.maxDelayMs ?? STORE_DEFAULTS.maxDelayMs,
    };
    if (this.#options.logRevisions < 1) throw new RangeError('logRevisions must be at least 1');
    this.#scope = new NodeScope(options.installNamespace ?? 'weft-system');
  }

  get revision(): number {
    return this.#revision;
  }

  get config(): MeshConfig {
    return this.#config;
  }

  /** Number of resources held (committed). */
  get size(): number {
    return this.#resources.size;
  }

  /** The oldest revision a delta can start from. */
  get floor(): number {
    return this.#floor;
  }

  get(ref: ResourceRef): Resource | undefined {
    return this.#resources.get(refKey(ref));
  }

  /** The revision that committed the resource's current value (undefined when absent). */
  revisionOf(ref: ResourceRef): number | undefined {
    return this.#changedAt.get(refKey(ref));
  }

  /** Committed values of one kind, in no particular order. The same array until the next commit. */
  values(kind: 'Workload'): readonly Workload[];
  values(kind: 'Service'): readonly Service[];
  values(kind: ResourceKind): readonly Resource['value'][] {
    let vs = this.#values.get(kind);
    if (!vs) {
      vs = [];
      for (const r of this.#resources.values()) if (r.kind === kind) vs.push(r.value);
      this.#values.set(kind, vs);
    }
    return vs;
  }

  /** Committed keys of one kind. */
  keys(kind: ResourceRef['kind']): string[] {
    const out: string[] = [];
    for (const r of this.#resources.values()) if (r.kind === kind) out.push(r.value.key);
    return out;
  }

  upsert(resource: Resource): void {
    this.#stage(refKey({ kind: resource.kind, key: resource.value.key }), resource);
  }

  remove(ref: ResourceRef): void {
    this.#stage(refKey(ref), null);
  }

  setConfig(config: MeshConfig): void {
    this.#stagedConfig = { ...config };
    this.#schedule();
  }

  /** Called with the new revision after each commit that changed something. */
  subscribe(listener: CommitListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Commits whatever is staged now. Returns the revision afterwards (unchanged when every staged
   * write was a no-op).
   */
  flush(): number {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const changed: RefKey[] = [];
    const changes: Change[] = [];
    for (const [key, next] of this.#staged) {
      const current = this.#resources.get(key);
      if (next === null) {
        if (current === undefined) continue;
        this.#resources.delete(key);
      } else {
        if (current !== undefined && jsonEqual(current, next)) continue;
        this.#resources.set(key, next);
      }
      changed.push(key);
      changes.push({ key, before: current, after: next ?? undefined });
    }
    this.#staged.clear();
    const configChanged = this.#stagedConfig !== undefined && !jsonEqual(this.#stagedConfig, this.#config);
    if (configChanged) this.#config = this.#stagedConfig as MeshConfig;
    this.#stagedConfig = undefined;
    if (changed.length === 0 && !configChanged) return this.#revision;

    this.#revision += 1;
    for (const key of changed) {
      const r = this.#resources.get(key);
      if (r) {
        this.#changedAt.set(key, this.#revision);
        this.#hashes.set(key, contentHash(r.value));
      } else {
        this.#changedAt.delete(key);
        this.#hashes.delete(key);
      }
    }
    this.#buckets.clear();
    this.#values.clear();
    // A policy whose nodes changed (a selected pod scheduled or gone) is logged like a change,
    // so that deltas look at it; its value, and so its changedAt, stay as they were.
    const moved = this.#scope.commit(this.#revision, changes, () => this.#workloads());
    const refs = moved.length === 0 ? changed : [...new Set([...changed, ...moved])];
    this.#append({ revision: this.#revision, refs, config: configChanged });
    this.#snapshot = undefined;
    this.#deltas.clear();
    this.#shared = undefined;
    this.#nodeSnapshots.clear();
    this.#nodeDeltas.clear();
    for (const listener of this.#listeners) listener(this.#revision);
    return this.#revision;
  }

  /** Everything, at the current revision. The same object until the next commit. */
  snapshot(): SnapshotMessage {
    this.#snapshot ??= {
      type: 'snapshot',
      epoch: this.epoch,
      revision: this.#revision,
      config: { ...this.#config },
      resources: [...this.#resources.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r),
    };
    return this.#snapshot;
  }

  /**
   * What changed after `base`, up to the current revision, or null when the log no longer
   * reaches back that far (or `base` is from the future). `base` equal to the current revision
   * gives an empty delta. Removes may name refs the agent never had (created and deleted after
   * `base`); removing an unknown ref is a no-op for the agent.
   */
  delta(base: number): DeltaMessage | null {
    if (!Number.isSafeInteger(base) || base < this.#floor || base > this.#revision) return null;
    const cached = this.#deltas.get(base);
    if (cached) return cached;
    const touched = new Set<RefKey>();
    let config = false;
    for (let i = this.#log.length - 1; i >= 0; i--) {
      const entry = this.#log[i] as LogEntry;
      if (entry.revision <= base) break;
      for (const k of entry.refs) touched.add(k);
      config ||= entry.config;
    }
    const upserts: Resource[] = [];
    const removes: ResourceRef[] = [];
    for (const key of [...touched].sort()) {
      const r = this.#resources.get(key);
      if (r) upserts.push(r);
      else removes.push(refOf(key));
    }
    const message: DeltaMessage = {
      type: 'delta',
      epoch: this.epoch,
      revision: this.#revision,
      base,
      ...(config ? { config: { ...this.#config } } : {}),
      upserts,
      removes,
    };
    this.#deltas.set(base, message);
    return message;
  }

  /** Everything one node's agent needs, at the current revision. */
  snapshotFor(node: string): SnapshotMessage {
    const policies = this.#scope
      .policiesFor(node)
      .sort()
      .map((k) => this.#resources.get(k) as Resource);
    const id = policies.map((p) => refKey({ kind: p.kind, key: p.value.key })).join('\n');
    let msg = this.#nodeSnapshots.get(id);
    if (!msg) {
      const shared = this.#sharedBody();
      msg = { type: 'snapshot', epoch: this.epoch, revision: this.#revision, config: { ...this.#config }, resources: [...policies, ...shared.nonPolicy] };
      this.#snapshotPolicies.set(msg, policies);
      this.#nodeSnapshots.set(id, msg);
    }
    return msg;
  }

  /**
   * What changed for one node's agent after `base`: every non-policy change, and the policies
   * that changed while the node needed them, or that it started or stopped needing. Null as for
   * delta(). An empty delta with base < revision means "nothing here for you": the sync stream
   * need not send it.
   */
  deltaFor(node: string, base: number): DeltaMessage | null {
    const all = this.delta(base);
    if (!all) return null;
    const upserts: Resource[] = [];
    const removes: ResourceRef[] = [];
    let id = '';
    // The node sets at `base` and now, looked up once per delta rather than once per node: a
    // fan-out asks for the same delta from 1,000 sessions.
    let sets = this.#deltaSets.get(all);
    if (!sets) {
      sets = new Map();
      this.#deltaSets.set(all, sets);
    }
    for (const r of all.upserts) {
      if (!isPolicy(r)) continue;
      const key = refKey({ kind: r.kind, key: r.value.key });
      let set = sets.get(key);
      if (!set) {
        set = { had: this.#scope.nodesAt(key, base), has: this.#scope.nodesNow(key) };
        sets.set(key, set);
      }
      const had = set.had.has(node);
      const has = set.has.has(node);
      if (has && (!had || (this.#changedAt.get(key) ?? 0) > base)) {
        upserts.push(r);
        id += `+${key}\n`;
      } else if (had && !has) {
        removes.push({ kind: r.kind, key: r.value.key });
        id += `-${key}\n`;
      }
    }
    for (const ref of all.removes) {
      if (ref.kind !== 'AccessPolicy' && ref.kind !== 'MeshTLSPolicy') continue;
      const key = refKey(ref);
      let set = sets.get(key);
      if (!set) {
        set = { had: this.#scope.nodesAt(key, base), has: this.#scope.nodesNow(key) };
        sets.set(key, set);
      }
      if (!set.had.has(node)) continue;
      removes.push(ref);
      id += `-${refKey(ref)}\n`;
    }
    const cacheKey = `${base}\n${id}`;
    const cached = this.#nodeDeltas.get(cacheKey);
    if (cached) return cached;
    const message: DeltaMessage = {
      ...all,
      upserts: [...upserts, ...all.upserts.filter((r) => !isPolicy(r))],
      removes: [...removes, ...all.removes.filter((r) => r.kind !== 'AccessPolicy' && r.kind !== 'MeshTLSPolicy')],
    };
    this.#nodeDeltas.set(cacheKey, message);
    return message;
  }

  /**
   * The message as newline-terminated JSON, in chunks to write in order. Built once per message
   * object; a node snapshot reuses the serialization of everything but its policies, which is
   * what makes a reconnect storm cost one serialization of the workloads instead of one per node.
   * `gzip`: for an agent that takes compressed messages; large ones are sent compressed, and a
   * node snapshot's shared part is compressed once per revision, as it is serialized once.
   */
  encode(msg: SyncMessage, gzip = false): Buffer[] {
    const plain = this.#encodePlain(msg);
    if (!gzip) return plain;
    let chunks = this.#gzipLines.get(msg);
    if (chunks) return chunks;
    const shared = this.#shared;
    if (plain.reduce((n, c) => n + c.length, 0) < GZIP_MIN_BYTES) {
      chunks = plain;
    } else if (plain.length === 3 && shared && plain[1] === shared.body) {
      // A node snapshot: its own head and policies compressed here, the shared body once per
      // revision, the tail once; the agent gunzips the members as one stream.
      shared.gzip ??= Buffer.from(gzip64(shared.body));
      chunks = [Buffer.from(`{"type":"gzip","parts":["${gzip64(plain[0] as Buffer)}","`), shared.gzip, Buffer.from(`","${GZIP_TAIL}"]}\n`)];
    } else {
      chunks = [Buffer.from(`{"type":"gzip","parts":["${gzip64(Buffer.concat(plain))}"]}\n`)];
    }
    this.#gzipLines.set(msg, chunks);
    return chunks;
  }

  #encodePlain(msg: SyncMessage): Buffer[] {
    let chunks = this.#lines.get(msg);
    if (chunks) return chunks;
    const policies = msg.type === 'snapshot' ? this.#snapshotPolicies.get(msg) : undefined;
    if (msg.type === 'snapshot' && policies && this.#shared && msg.revision === this.#revision) {
      const head = JSON.stringify({ type: msg.type, epoch: msg.epoch, revision: msg.revision, config: msg.config });
      const own = policies.map((p) => JSON.stringify(p)).join(',');
      const sep = own && this.#shared.body.length > 0 ? ',' : '';
      chunks = [Buffer.from(`${head.slice(0, -1)},"resources":[${own}${sep}`), this.#shared.body, Buffer.from(']}\n')];
    } else {
      chunks = [Buffer.from(`${JSON.stringify(msg)}\n`)];
    }
    this.#lines.set(msg, chunks);
    return chunks;
  }

  /**
   * The first message for an agent that said by content what it holds (hello.digests): a delta
   * that applies to its state as announced, with every bucket whose digest differs from this
   * node's view sent whole and marked replaced. Routes only when `routes` (an agent without them
   * holds none). Equal state gives an empty delta that only moves the agent to this epoch.
   */
  resumeFor(node: string, held: { epoch: string; revision: number; digests: HelloDigests }, routes: boolean): DeltaMessage {
    const upserts: Resource[] = [];
    const replace: ReplacedBuckets = {};
    const policies = this.#scope.policiesFor(node);
    for (const kind of ['Workload', 'Service', 'AccessPolicy', 'MeshTLSPolicy', 'Route'] as const) {
      if (kind === 'Route' && !routes) continue;
      const d = held.digests[kind];
      const buckets = d?.buckets ?? 1;
      const theirs = d ? decodeSums(d) : Buffer.alloc(DIGEST_BYTES);
      const mine = kind === 'AccessPolicy' || kind === 'MeshTLSPolicy' ? this.#nodeBuckets(policies, kind, buckets) : this.#kindBuckets(kind, buckets);
      const ids: number[] = [];
      for (let i = 0; i < buckets; i++) {
        const at = i * DIGEST_BYTES;
        // Undecodable sums compare unequal everywhere: the whole kind is sent, nothing is trusted.
        if (theirs && mine.sums.compare(theirs, at, at + DIGEST_BYTES, at, at + DIGEST_BYTES) === 0) continue;
        ids.push(i);
        for (const [key] of mine.members[i] as [RefKey, string][]) upserts.push(this.#resources.get(key) as Resource);
      }
      if (ids.length > 0) replace[kind] = { buckets, ids };
    }
    return {
      type: 'delta',
      epoch: this.epoch,
      revision: this.#revision,
      base: this.#revision,
      config: { ...this.#config },
      upserts,
      removes: [],
      resume: { epoch: held.epoch, revision: held.revision, replace },
    };
  }

  /**
   * What an agent that last applied (epoch, revision) should get: a delta when it is from this
   * epoch and inside the log, otherwise a snapshot.
   */
  resumeFrom(epoch: string | undefined, revision: number | undefined): SyncMessage {
    if (epoch === this.epoch && revision !== undefined) {
      const d = this.delta(revision);
      if (d) return d;
    }
    return this.snapshot();
  }

  /** Stops the debounce timer; staged writes are dropped. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#staged.clear();
    this.#listeners.clear();
  }

  #stage(key: RefKey, value: Resource | null): void {
    this.#staged.set(key, value);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    const now = performance.now();
    if (this.#timer === undefined) this.#firstStagedAt = now;
    else clearTimeout(this.#timer);
    const wait = Math.max(0, Math.min(this.#options.debounceMs, this.#firstStagedAt + this.#options.maxDelayMs - now));
    this.#timer = setTimeout(() => this.flush(), wait);
  }

  #kindBuckets(kind: ResourceKind, buckets: number): { members: [RefKey, string][][]; sums: Buffer } {
    const id = `${kind}/${buckets}`;
    let b = this.#buckets.get(id);
    if (!b) {
      const members: [RefKey, string][][] = Array.from({ length: buckets }, () => []);
      for (const [key, r] of this.#resources) {
        if (r.kind === kind) (members[bucketOf(r.value.key, buckets)] as [RefKey, string][]).push([key, this.#hashes.get(key) as string]);
      }
      b = { members, sums: sumsOf(members.map((m) => m.map(([key, hash]) => [key.slice(kind.length + 1), hash] as const))) };
      this.#buckets.set(id, b);
    }
    return b;
  }

  #nodeBuckets(policies: RefKey[], kind: ResourceKind, buckets: number): { members: [RefKey, string][][]; sums: Buffer } {
    const members: [RefKey, string][][] = Array.from({ length: buckets }, () => []);
    for (const key of policies) {
      const r = this.#resources.get(key);
      if (r?.kind === kind) (members[bucketOf(r.value.key, buckets)] as [RefKey, string][]).push([key, this.#hashes.get(key) as string]);
    }
    return { members, sums: sumsOf(members.map((m) => m.map(([key, hash]) => [key.slice(kind.length + 1), hash] as const))) };
  }

  *#workloads(): Iterable<Workload> {
    for (const r of this.#resources.values()) if (r.kind === 'Workload') yield r.value;
  }

  #sharedBody(): { nonPolicy: Resource[]; body: Buffer } {
    if (!this.#shared) {
      const nonPolicy = [...this.#resources.entries()]
        .filter(([, r]) => !isPolicy(r))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, r]) => r);
      this.#shared = { nonPolicy, body: Buffer.from(nonPolicy.map((r) => JSON.stringify(r)).join(',')) };
    }
    return this.#shared;
  }

  #append(entry: LogEntry): void {
    this.#log.push(entry);
    this.#logRefs += entry.refs.length;
    // Always keep the newest entry, even if it alone exceeds logRefs: a delta of one revision is
    // never bigger than the change itself.
    while (this.#log.length > 1 && (this.#log.length > this.#options.logRevisions || this.#logRefs > this.#options.logRefs)) {
      const dropped = this.#log.shift() as LogEntry;
      this.#logRefs -= dropped.refs.length;
      this.#floor = dropped.revision;
    }
    this.#scope.prune(this.#floor);
  }
}
