// The revisioned store: the one copy of what agents see, numbered so that they can resume.
//
// - One epoch per store (per controller process): revisions mean nothing across epochs.
// - Writers stage upserts and removes at will; a short debounce turns a burst (a rollout, the
//   initial list, a namespace relabel touching every pod) into one revision instead of thousands.
//   A staged write equal to what the store holds is dropped, so a resync costs no revision.
// - A bounded log of the refs each revision touched lets an agent that comes back at
//   (epoch, revision) get only what changed since; once its revision has fallen out of the log it
//   gets a snapshot. The log keeps refs, not values: a delta always carries the current values.
import { randomBytes } from 'node:crypto';
import type { MeshConfig, Resource, ResourceRef, SyncMessage } from '../../api/agent-sync.ts';
import { jsonEqual } from './equal.ts';

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
}

export const STORE_DEFAULTS = { logRevisions: 1024, logRefs: 65_536, debounceMs: 10, maxDelayMs: 100 } as const;

export type CommitListener = (revision: number) => void;

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
  readonly #options: Required<Omit<StoreOptions, 'config' | 'epoch'>>;
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

  /** Committed keys of one kind. */
  /** The revision that committed the resource's current value (undefined when absent). */
  revisionOf(ref: ResourceRef): number | undefined {
    return this.#changedAt.get(refKey(ref));
  }

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
    }
    this.#staged.clear();
    const configChanged = this.#stagedConfig !== undefined && !jsonEqual(this.#stagedConfig, this.#config);
    if (configChanged) this.#config = this.#stagedConfig as MeshConfig;
    this.#stagedConfig = undefined;
    if (changed.length === 0 && !configChanged) return this.#revision;

    this.#revision += 1;
    for (const key of changed) {
      if (this.#resources.has(key)) this.#changedAt.set(key, this.#revision);
      else this.#changedAt.delete(key);
    }
    this.#append({ revision: this.#revision, refs: changed, config: configChanged });
    this.#snapshot = undefined;
    this.#deltas.clear();
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
  }
}
