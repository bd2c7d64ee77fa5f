// Simulated agents for bench/scale.ts: many real sync clients (agent/sync/client.ts: real TLS 1.3,
// HTTP/2, a real node-bound service-account token each, jittered backoff, resume by revision) in
// one process, each from its own 127/8 source address. Each keeps only what the bench measures
// (epoch, revision, which policy generations it holds, and content hashes for the hello's digests)
// instead of a full agent store, so that a thousand fit on a small machine; every message is still
// parsed and validated as an agent does.
//
//   node bench/scale-agents.ts '<json ScaleAgentsConfig>'
//
// One JSON line on stdout per message received (AgentEvent), written as it arrives; SIGTERM stops
// the clients and exits.
import type { Resource, ResourceKind, SyncMessage } from '../api/agent-sync.ts';
import { bucketOf, bucketsFor, contentHash, digestOf, type HelloDigests, type KindDigest } from '../api/agent-sync-digest.ts';
import { SyncClient, type SyncTarget } from '../agent/sync/client.ts';
import type { ApplyResult } from '../agent/state/store.ts';

export interface ScaleAgentsConfig {
  url: string;
  caFile: string;
  serverName: string;
  /** Token files: `${tokenDir}/${node}`. */
  tokenDir: string;
  nodes: string[];
  /** Agent i connects from 127.<200 + (first+i) >> 16>.<((first+i) >> 8) & 255>.<(first+i) & 255>. */
  first: number;
}

export interface AgentEvent {
  /** Node. */
  n: string;
  /** Arrival, ms since the epoch (performance.timeOrigin + now(): comparable across processes). */
  at: number;
  type: SyncMessage['type'];
  epoch: string;
  rev: number;
  bytes: number;
  /** Upserts and removes in the message (a snapshot: its resources). */
  up: number;
  rm: number;
  /** Access policies the message carried: [key, generation]. */
  pol: [string, number][];
  /** Access policies it removed. */
  polRm: string[];
  /** A resume by content (delta.resume): how many buckets it replaced. */
  resume?: number;
  /** Access policies the agent holds after applying it. */
  held: string[];
}

export function sourceAddress(i: number): string {
  return `127.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

type Hashes = ReadonlyMap<string, string>;
const EMPTY: Hashes = new Map();
const KINDS: readonly ResourceKind[] = ['Workload', 'Service', 'AccessPolicy', 'MeshTLSPolicy', 'Route'];
// Workloads, services and routes are the same for every node, so every agent in this process
// that applies the same message on top of the same content reaches the same content: computed
// once (hashing 10,000 resources per agent would make the bench measure itself), shared after.
const MESH_WIDE = new Set<ResourceKind>(['Workload', 'Service', 'Route']);
const shared = new Map<string, Hashes>();
const ids = new WeakMap<Hashes, number>();
let nextId = 1;
const idOf = (h: Hashes): number => {
  let id = ids.get(h);
  if (id === undefined) {
    id = nextId++;
    ids.set(h, id);
  }
  return id;
};
const digestsOf = new WeakMap<Hashes, KindDigest>();

function applyKind(prev: Hashes, kind: ResourceKind, msg: SyncMessage): Hashes {
  if (msg.type === 'snapshot') {
    const rs = msg.resources.filter((r) => r.kind === kind);
    return rs.length === 0 ? EMPTY : new Map(rs.map((r) => [r.value.key, contentHash(r.value)]));
  }
  const replace = msg.resume?.replace[kind];
  const upserts = msg.upserts.filter((r) => r.kind === kind);
  const removes = msg.removes.filter((r) => r.kind === kind);
  if (!replace && upserts.length === 0 && removes.length === 0) return prev;
  const next = new Map(prev);
  if (replace) {
    const drop = new Set(replace.ids);
    for (const key of prev.keys()) if (drop.has(bucketOf(key, replace.buckets))) next.delete(key);
  }
  for (const r of removes) next.delete(r.key);
  for (const r of upserts) next.set(r.value.key, contentHash(r.value));
  return next;
}

/**
 * Only what the bench reads and what a hello says (content digests), with the agent store's
 * rules for which message applies to what.
 */
class LightStore implements SyncTarget {
  epoch: string | undefined;
  revision = 0;
  readonly policies = new Map<string, number>();
  #kinds = new Map<ResourceKind, Hashes>();
  // Generations are what the bench measures; content hashes do not keep them.
  apply(msg: SyncMessage): ApplyResult {
    if (msg.type === 'delta' && msg.resume) {
      if (msg.resume.epoch !== this.epoch || msg.resume.revision !== this.revision) return { ok: false, reason: `resume of ${msg.resume.epoch}/${msg.resume.revision} but at ${this.epoch ?? '-'}/${this.revision}` };
    } else if (msg.type === 'delta' && (msg.epoch !== this.epoch || msg.base !== this.revision)) {
      return { ok: false, reason: `delta on ${msg.epoch}/${msg.base} but at ${this.epoch ?? '-'}/${this.revision}` };
    }
    const kinds = new Map<ResourceKind, Hashes>();
    for (const kind of KINDS) {
      const prev = this.#kinds.get(kind) ?? EMPTY;
      if (!MESH_WIDE.has(kind)) {
        kinds.set(kind, applyKind(prev, kind, msg));
        continue;
      }
      const id = msg.type === 'snapshot' ? `s|${msg.epoch}|${msg.revision}|${kind}` : `d|${idOf(prev)}|${msg.epoch}|${msg.base}|${msg.revision}|${msg.resume ? 'r' : ''}|${kind}`;
      let next = shared.get(id);
      if (!next) {
        next = applyKind(prev, kind, msg);
        shared.set(id, next);
        if (shared.size > 512) shared.delete(shared.keys().next().value as string);
      }
      kinds.set(kind, next);
    }
    this.#kinds = kinds;
    this.policies.clear();
    for (const r of policyResources(msg)) this.#generations.set(r.value.key, r.value.generation);
    for (const key of kinds.get('AccessPolicy')?.keys() ?? []) this.policies.set(key, this.#generations.get(key) ?? 0);
    this.epoch = msg.epoch;
    this.revision = msg.revision;
    return { ok: true, changed: true };
  }

  readonly #generations = new Map<string, number>();

  digests(): HelloDigests | undefined {
    if (this.epoch === undefined) return undefined;
    const out: HelloDigests = {};
    for (const [kind, hashes] of this.#kinds) {
      if (hashes.size === 0) continue;
      let d = digestsOf.get(hashes);
      if (!d) {
        const buckets = bucketsFor(hashes.size);
        d = { buckets, sums: digestOf(hashes, buckets).toString('base64') };
        digestsOf.set(hashes, d);
      }
      out[kind] = d;
    }
    return out;
  }
}

function policyResources(msg: SyncMessage): Extract<Resource, { kind: 'AccessPolicy' }>[] {
  const rs = msg.type === 'snapshot' ? msg.resources : msg.upserts;
  return rs.filter((r): r is Extract<Resource, { kind: 'AccessPolicy' }> => r.kind === 'AccessPolicy');
}

function eventOf(node: string, msg: SyncMessage, bytes: number, store: LightStore): AgentEvent {
  const resources = msg.type === 'snapshot' ? msg.resources : msg.upserts;
  const pol: [string, number][] = [];
  for (const r of resources) if (r.kind === 'AccessPolicy') pol.push([r.value.key, r.value.generation]);
  const polRm = msg.type === 'delta' ? msg.removes.filter((r) => r.kind === 'AccessPolicy').map((r) => r.key) : [];
  return {
    n: node,
    at: performance.timeOrigin + performance.now(),
    type: msg.type,
    epoch: msg.epoch,
    rev: msg.revision,
    bytes,
    up: resources.length,
    rm: msg.type === 'delta' ? msg.removes.length : 0,
    pol,
    polRm,
    ...(msg.type === 'delta' && msg.resume ? { resume: Object.values(msg.resume.replace).reduce((a, r) => a + r.ids.length, 0) } : {}),
    held: [...store.policies.keys()].sort(),
  };
}

export function startAgents(cfg: ScaleAgentsConfig, emit: (e: AgentEvent) => void): () => void {
  const clients = cfg.nodes.map((node, i) => {
    const store = new LightStore();
    let pending: [SyncMessage, number] | undefined;
    const client = new SyncClient({
      url: cfg.url,
      node,
      caFile: cfg.caFile,
      tokenFile: `${cfg.tokenDir}/${node}`,
      serverName: cfg.serverName,
      agentVersion: 'scale-bench',
      store,
      localAddress: sourceAddress(cfg.first + i),
      // Reported once applied, so that the event can say what the agent then holds.
      onMessage: (msg, bytes) => {
        pending = [msg, bytes];
      },
      onApplied: () => {
        if (pending) emit(eventOf(node, pending[0], pending[1], store));
        pending = undefined;
      },
      log: () => {},
    });
    client.start();
    return client;
  });
  return () => {
    for (const c of clients) c.stop();
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as ScaleAgentsConfig;
  let buffered: string[] = [];
  const flush = (): void => {
    if (buffered.length === 0) return;
    process.stdout.write(buffered.join(''));
    buffered = [];
  };
  const timer = setInterval(flush, 20);
  const stop = startAgents(cfg, (e) => buffered.push(`${JSON.stringify(e)}\n`));
  process.on('SIGTERM', () => {
    stop();
    clearInterval(timer);
    flush();
    process.exit(0);
  });
}
