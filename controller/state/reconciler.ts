// Keeps the revisioned store equal to what compute.ts makes of the informer caches.
//
// Level-based: an event only says *which* key to look at again; the resource is recomputed from
// the caches as they are now, so that missed, repeated or reordered events cannot leave a wrong
// value behind. A periodic full pass (and one right after the caches first sync) also removes
// keys whose objects vanished while a watch was down, and catches what no single event names (an
// EndpointSlice relabelled to another Service).
import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../../api/log.ts';
import type { ResourceWatch } from '../kube/resource-watch.ts';
import { SERVICE_NAME_LABEL, computeService, computeWorkload, objectKey } from './compute.ts';
import type { RevisionedStore } from './store.ts';

/** The caches the reconciler reads: the ClusterWatches minus what it does not need. */
export interface MeshSources {
  pods: ResourceWatch<V1Pod>;
  namespaces: ResourceWatch<V1Namespace>;
  services: ResourceWatch<V1Service>;
  endpointSlices: ResourceWatch<V1EndpointSlice>;
  readonly whenSynced: Promise<void>;
}

export interface ReconcilerOptions {
  sources: MeshSources;
  store: RevisionedStore;
  trustDomain: string;
  log: Logger;
  /** Reconcilers of other kinds (policies) whose full pass must be in the first snapshot too. */
  others?: { resyncAll(): void }[];
  /** Full recompute period; 0 disables it. */
  resyncIntervalMs?: number;
}

export class MeshStateReconciler {
  readonly #sources: MeshSources;
  readonly #store: RevisionedStore;
  readonly #trustDomain: string;
  readonly #log: Logger;
  readonly #resyncIntervalMs: number;
  readonly #others: { resyncAll(): void }[];
  #ready = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #whenReady: Promise<void>;

  constructor(opts: ReconcilerOptions) {
    this.#sources = opts.sources;
    this.#store = opts.store;
    this.#trustDomain = opts.trustDomain;
    this.#log = opts.log.child({ component: 'reconciler' });
    this.#resyncIntervalMs = opts.resyncIntervalMs ?? 5 * 60_000;
    this.#others = opts.others ?? [];

    const { pods, namespaces, services, endpointSlices } = this.#sources;
    pods.onChange((_e, pod) => this.#workload(pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''));
    namespaces.onChange((_e, ns) => {
      // The namespace label opts every pod in it in or out.
      const name = ns.metadata?.name ?? '';
      for (const pod of pods.list(name)) this.#workload(name, pod.metadata?.name ?? '');
    });
    services.onChange((_e, svc) => this.#service(svc.metadata?.namespace ?? '', svc.metadata?.name ?? ''));
    endpointSlices.onChange((_e, slice) => {
      const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (svc) this.#service(slice.metadata?.namespace ?? '', svc);
    });

    // Agents must never be handed the empty store of a controller that has not listed yet: that
    // would tell them every workload is gone.
    this.#whenReady = this.#sources.whenSynced.then(() => {
      if (this.#stopped) return;
      this.resyncAll();
      this.#store.flush();
      this.#ready = true;
      this.#log.info('mesh state ready', { revision: this.#store.revision, resources: this.#store.size });
      if (this.#resyncIntervalMs > 0) {
        this.#timer = setInterval(() => this.resyncAll(), this.#resyncIntervalMs);
        this.#timer.unref();
      }
    });
  }

  /** True once the caches synced and the store holds their first full computation. */
  ready(): boolean {
    return this.#ready;
  }

  get whenReady(): Promise<void> {
    return this.#whenReady;
  }

  /** Recomputes every key from the caches and removes those whose objects are gone. */
  resyncAll(): void {
    const { pods, services } = this.#sources;
    const workloads = new Set<string>();
    for (const pod of pods.list()) {
      const ns = pod.metadata?.namespace ?? '';
      const name = pod.metadata?.name ?? '';
      workloads.add(objectKey(ns, name));
      this.#workload(ns, name);
    }
    for (const key of this.#store.keys('Workload')) if (!workloads.has(key)) this.#store.remove({ kind: 'Workload', key });

    const svcs = new Set<string>();
    for (const svc of services.list()) {
      const ns = svc.metadata?.namespace ?? '';
      const name = svc.metadata?.name ?? '';
      svcs.add(objectKey(ns, name));
      this.#service(ns, name);
    }
    for (const key of this.#store.keys('Service')) if (!svcs.has(key)) this.#store.remove({ kind: 'Service', key });
    // Policies are part of the first state agents get: a snapshot without them would fail open.
    for (const other of this.#others) other.resyncAll();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
  }

  #workload(namespace: string, name: string): void {
    if (this.#stopped || !namespace || !name) return;
    const key = objectKey(namespace, name);
    const pod = this.#sources.pods.get(name, namespace);
    const w = pod ? computeWorkload(pod, this.#sources.namespaces.get(namespace), this.#trustDomain) : null;
    if (w) this.#store.upsert({ kind: 'Workload', value: w });
    else this.#store.remove({ kind: 'Workload', key });
  }

  #service(namespace: string, name: string): void {
    if (this.#stopped || !namespace || !name) return;
    const key = objectKey(namespace, name);
    const svc = this.#sources.services.get(name, namespace);
    const s = svc ? computeService(svc, this.#sources.endpointSlices.list(namespace)) : null;
    if (s) this.#store.upsert({ kind: 'Service', value: s });
    else this.#store.remove({ kind: 'Service', key });
  }
}
