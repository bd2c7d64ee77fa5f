// Watches the pods bound to this node (fieldSelector spec.nodeName=<node>, the only pods the Node
// authorizer lets a kubelet list) and hands each to its own worker, keyed by UID. After the first
// complete list it collects pods this node still has state for but the API no longer knows
// (deleted while the kubelet was down).
import { ListWatch, Watch, type CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { apiErrorSummary } from './errors.ts';
import type { Logger } from '../../api/log.ts';
import { PodWorker, type PodWorkerDeps } from './pod-worker.ts';

export interface PodManagerOptions {
  kc: KubeConfig;
  core: CoreV1Api;
  worker: PodWorkerDeps;
  log: Logger;
  /** Wait before re-listing after the watch failed. */
  relistDelayMs?: number;
}

export class PodManager {
  readonly #o: PodManagerOptions;
  readonly #log: Logger;
  readonly #workers = new Map<string, PodWorker>();
  readonly #informer: ListWatch<V1Pod>;
  #collected = false;
  #stopped = false;
  #restart: NodeJS.Timeout | undefined;

  constructor(opts: PodManagerOptions) {
    this.#o = opts;
    this.#log = opts.log;
    const fieldSelector = `spec.nodeName=${opts.worker.nodeName}`;
    this.#informer = new ListWatch<V1Pod>(
      '/api/v1/pods',
      new Watch(opts.kc),
      () => opts.core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
    this.#informer.on('add', (pod) => this.#observe(pod));
    this.#informer.on('update', (pod) => this.#observe(pod));
    this.#informer.on('delete', (pod) => this.#workers.get(pod.metadata?.uid ?? '')?.update(undefined));
    this.#informer.on('error', (err) => {
      if (this.#stopped) return;
      const delay = this.#o.relistDelayMs ?? 5000;
      this.#log.warn('pod watch failed; listing again', { err: apiErrorSummary(err), retryInMs: delay });
      this.#restart = setTimeout(() => void this.#startInformer(), delay);
    });
  }

  async start(): Promise<void> {
    await this.#startInformer();
  }

  /** Stops watching, then stops every pod and releases its network, in parallel. */
  async shutdown(graceCapMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    await this.#informer.stop();
    // Pods on disk that no worker owns yet (the first list never completed) go too.
    const store = this.#o.worker.store;
    for (const uid of await store.listUIDs()) {
      if (this.#workers.has(uid)) continue;
      const rec = await store.readPod(uid).catch(() => undefined);
      this.#workers.set(uid, new PodWorker(this.#o.worker, rec ?? { uid, namespace: '', name: '' }));
    }
    await Promise.all([...this.#workers.values()].map((w) => w.shutdown(graceCapMs)));
    this.#workers.clear();
  }

  async #startInformer(): Promise<void> {
    if (this.#stopped) return;
    await this.#informer.start();
    // A resource version means the list succeeded: only then is "not in the API" trustworthy.
    if (!this.#collected && this.#informer.latestResourceVersion() !== '') {
      this.#collected = true;
      await this.#collectGarbage();
    }
  }

  #observe(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid || this.#stopped || pod.spec?.nodeName !== this.#o.worker.nodeName) return;
    this.#workerFor(uid, pod).update(pod);
  }

  #workerFor(uid: string, pod?: V1Pod): PodWorker {
    let w = this.#workers.get(uid);
    if (!w) {
      w = new PodWorker(this.#o.worker, { uid, namespace: pod?.metadata?.namespace ?? '', name: pod?.metadata?.name ?? '' });
      this.#workers.set(uid, w);
      const worker = w;
      void worker.done.then(() => {
        if (this.#workers.get(uid) === worker) this.#workers.delete(uid);
      });
    }
    return w;
  }

  async #collectGarbage(): Promise<void> {
    const store = this.#o.worker.store;
    const known = new Set(this.#informer.list().map((p) => p.metadata?.uid));
    for (const uid of await store.listUIDs()) {
      if (known.has(uid) || this.#workers.has(uid)) continue;
      const rec = await store.readPod(uid).catch(() => undefined);
      this.#log.info('collecting a pod that is gone from the API', { uid, pod: rec ? `${rec.namespace}/${rec.name}` : undefined });
      const w = new PodWorker(this.#o.worker, rec ?? { uid, namespace: '', name: '' });
      this.#workers.set(uid, w);
      void w.done.then(() => this.#workers.delete(uid));
      w.update(undefined);
    }
  }
}
