// The agent's one store of workloads, services and mesh configuration, filled by the sync
// client and read by the proxies. A message is applied whole or not at all: an invalid delta
// leaves the last good state in place. The store is checkpointed to disk so that an agent that
// restarts while the controller is away comes back with the state it had.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { parseSyncMessage, type MeshConfig, type Resource, type ResourceKind, type Service, type SyncMessage, type Workload } from '../../api/agent-sync.ts';
import { bucketOf, bucketsFor, contentHash, digestOf, type HelloDigests } from '../../api/agent-sync-digest.ts';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy } from '../../api/policy/model.ts';
import type { CompiledRoute } from '../../api/route.ts';

export interface Destination {
  /** Set when the address is a pod's: meshed or not. */
  workload?: Workload;
  /** Set when the address is a Service ClusterIP. */
  service?: Service;
}

export type ApplyResult = { ok: true; changed: boolean } | { ok: false; reason: string };

interface Checkpoint {
  epoch: string;
  revision: number;
  config: MeshConfig;
  resources: Resource[];
}

export class StateStore {
  epoch: string | undefined;
  revision = 0;
  config: MeshConfig = { trustDomain: 'cluster.local', mtlsMode: 'PERMISSIVE' };
  readonly #workloads = new Map<string, Workload>();
  readonly #services = new Map<string, Service>();
  readonly #accessPolicies = new Map<string, CompiledAccessPolicy>();
  readonly #mtlsPolicies = new Map<string, CompiledMeshTLSPolicy>();
  readonly #routes = new Map<string, CompiledRoute>();
  // Indexes for the data path: one map lookup per connection.
  #byIP = new Map<string, Workload>();
  #byVIP = new Map<string, Service>();
  #byUID = new Map<string, Workload>();
  // Addresses this node's CNI handed to local pods, known before the controller reports them.
  readonly #localIPs = new Map<string, string>();
  #listeners = new Set<() => void>();
  // Content hashes by value object: values are replaced, never changed, once applied.
  readonly #hashes = new WeakMap<object, string>();

  /** Applies a sync message; a delta on another base is refused (the client then reconnects). */
  apply(msg: SyncMessage): ApplyResult {
    if (msg.type === 'snapshot') {
      for (const m of this.#maps()) m.clear();
      for (const r of msg.resources) this.#put(r);
      this.config = msg.config;
    } else if (msg.resume) {
      const { resume } = msg;
      if (resume.epoch !== this.epoch || resume.revision !== this.revision) {
        return { ok: false, reason: `resume of ${resume.epoch}/${resume.revision} but the agent is at ${this.epoch ?? '-'}/${this.revision}` };
      }
      for (const [kind, r] of Object.entries(resume.replace)) {
        const ids = new Set(r.ids);
        const map = this.#mapOf(kind as ResourceKind);
        for (const key of [...map.keys()]) if (ids.has(bucketOf(key, r.buckets))) map.delete(key);
      }
      for (const r of msg.removes) this.#mapOf(r.kind).delete(r.key);
      for (const r of msg.upserts) this.#put(r);
      if (msg.config) this.config = msg.config;
    } else {
      if (msg.epoch !== this.epoch || msg.base !== this.revision) {
        return { ok: false, reason: `delta on ${msg.epoch}/${msg.base} but the agent is at ${this.epoch ?? '-'}/${this.revision}` };
      }
      for (const r of msg.removes) this.#mapOf(r.kind).delete(r.key);
      for (const r of msg.upserts) this.#put(r);
      if (msg.config) this.config = msg.config;
    }
    this.epoch = msg.epoch;
    this.revision = msg.revision;
    this.#reindex();
    for (const l of this.#listeners) l();
    return { ok: true, changed: true };
  }

  #maps(): Map<string, unknown>[] {
    return [this.#workloads, this.#services, this.#accessPolicies, this.#mtlsPolicies, this.#routes];
  }

  #mapOf(kind: Resource['kind']): Map<string, unknown> {
    switch (kind) {
      case 'Workload':
        return this.#workloads;
      case 'Service':
        return this.#services;
      case 'AccessPolicy':
        return this.#accessPolicies;
      case 'MeshTLSPolicy':
        return this.#mtlsPolicies;
      case 'Route':
        return this.#routes;
    }
  }

  #put(r: Resource): void {
    this.#mapOf(r.kind).set(r.value.key, r.value);
  }

  #resources(): Resource[] {
    return [
      ...[...this.#workloads.values()].map((value) => ({ kind: 'Workload' as const, value })),
      ...[...this.#services.values()].map((value) => ({ kind: 'Service' as const, value })),
      ...[...this.#accessPolicies.values()].map((value) => ({ kind: 'AccessPolicy' as const, value })),
      ...[...this.#mtlsPolicies.values()].map((value) => ({ kind: 'MeshTLSPolicy' as const, value })),
      ...[...this.#routes.values()].map((value) => ({ kind: 'Route' as const, value })),
    ];
  }

  #reindex(): void {
    const byIP = new Map<string, Workload>();
    for (const w of this.#workloads.values()) for (const ip of w.ips) byIP.set(ip, w);
    const byVIP = new Map<string, Service>();
    for (const s of this.#services.values()) for (const ip of s.clusterIPs) byVIP.set(ip, s);
    this.#byIP = byIP;
    this.#byVIP = byVIP;
    this.#byUID = new Map([...this.#workloads.values()].map((w) => [w.uid, w]));
  }

  /** What this store holds, by content, for a hello (api/agent-sync-digest.ts); none before the first sync. */
  digests(): HelloDigests | undefined {
    if (this.epoch === undefined) return undefined;
    const out: HelloDigests = {};
    const kinds: [ResourceKind, Map<string, { key: string }>][] = [
      ['Workload', this.#workloads],
      ['Service', this.#services],
      ['AccessPolicy', this.#accessPolicies],
      ['MeshTLSPolicy', this.#mtlsPolicies],
      ['Route', this.#routes],
    ];
    for (const [kind, map] of kinds) {
      if (map.size === 0) continue;
      const buckets = bucketsFor(map.size);
      const entries = [...map].map(([key, value]) => [key, this.#hashOf(value as Resource['value'])] as const);
      out[kind] = { buckets, sums: digestOf(entries, buckets).toString('base64') };
    }
    return out;
  }

  #hashOf(value: Resource['value']): string {
    let h = this.#hashes.get(value);
    if (h === undefined) {
      h = contentHash(value);
      this.#hashes.set(value, h);
    }
    return h;
  }

  /**
   * Records the IPs a local pod just got from the CNI chain. The controller reports them only
   * once the kubelet has written the pod's status; until then this keeps the pod reachable.
   */
  setLocalIPs(uid: string, ips: string[]): void {
    for (const ip of ips) this.#localIPs.set(ip, uid);
  }

  clearLocalIPs(ips: string[]): void {
    for (const ip of ips) this.#localIPs.delete(ip);
  }

  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  workloadByIP(ip: string): Workload | undefined {
    const w = this.#byIP.get(ip);
    if (w) return w;
    const uid = this.#localIPs.get(ip);
    return uid === undefined ? undefined : this.#byUID.get(uid);
  }

  serviceByIP(ip: string): Service | undefined {
    return this.#byVIP.get(ip);
  }

  workload(key: string): Workload | undefined {
    return this.#workloads.get(key);
  }

  workloadByUID(uid: string): Workload | undefined {
    return this.#byUID.get(uid);
  }

  workloads(): Workload[] {
    return [...this.#workloads.values()];
  }

  services(): Service[] {
    return [...this.#services.values()];
  }

  service(key: string): Service | undefined {
    return this.#services.get(key);
  }

  accessPolicies(): CompiledAccessPolicy[] {
    return [...this.#accessPolicies.values()];
  }

  mtlsPolicies(): CompiledMeshTLSPolicy[] {
    return [...this.#mtlsPolicies.values()];
  }

  routes(): CompiledRoute[] {
    return [...this.#routes.values()];
  }

  /** Workloads scheduled on a node (the ones whose certificates this agent needs). */
  workloadsOnNode(node: string): Workload[] {
    return this.workloads().filter((w) => w.node === node);
  }

  async save(path: string): Promise<void> {
    if (!this.epoch) return;
    const cp: Checkpoint = {
      epoch: this.epoch,
      revision: this.revision,
      config: this.config,
      resources: this.#resources(),
    };
    await writeFile(`${path}.tmp`, JSON.stringify(cp), { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  }

  /** Restores a checkpoint; a missing or unreadable one leaves the store empty. */
  async load(path: string): Promise<boolean> {
    let cp: Checkpoint;
    try {
      cp = JSON.parse(await readFile(path, 'utf8')) as Checkpoint;
    } catch {
      return false;
    }
    // Validate through the protocol's own parser: a corrupt checkpoint must not poison the store.
    try {
      const msg = parseSyncMessage(JSON.stringify({ type: 'snapshot', ...cp }));
      this.apply(msg);
      return true;
    } catch {
      return false;
    }
  }
}
