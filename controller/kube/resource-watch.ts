// One watched resource: a @kubernetes/client-node informer (list, then watch, with a local
// cache) that does not stay dead.
//
// The library's informer reconnects by itself after a watch ends normally or times out, but
// after an error (API server down, a 5xx, a list that fails) it only calls its error handlers and
// stops. Here every such error schedules a restart with jittered exponential back-off; the restart
// resumes from the last resourceVersion, and the library relists when the API server answers 410
// Gone. The cache keeps serving its last contents in the meantime: stale state is better than no
// state for agents, and the level-based reconciler catches up on the relist.
import { makeInformer } from '@kubernetes/client-node';
import type { Informer, KubeConfig, KubernetesObject, ListPromise, ObjectCache } from '@kubernetes/client-node';
import type { Logger } from '../../api/log.ts';
import { Backoff } from './backoff.ts';
import type { BackoffOptions } from './backoff.ts';
import { apiErrorSummary, httpStatus } from '../../api/kube-errors.ts';

export type WatchEvent = 'add' | 'update' | 'delete';
export type WatchHandler<T> = (event: WatchEvent, obj: T) => void;

export interface ResourceWatch<T extends KubernetesObject> {
  /** Plural resource name, for logs and metrics ("pods"). */
  readonly resource: string;
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
  /** Every change the informer sees, including those of the initial list and of relists. */
  onChange(handler: WatchHandler<T>): void;
  /** True once the first full list has been loaded and the watch established; stays true. */
  synced(): boolean;
  /** Resolves when synced() first becomes true. Never rejects: errors are retried. */
  readonly whenSynced: Promise<void>;
  /** False between a watch error and the next successful restart. */
  healthy(): boolean;
  start(): void;
  stop(): Promise<void>;
}

export interface ResourceWatchOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  resource: string;
  /** The watch path, e.g. `/api/v1/pods`. */
  path: string;
  list: ListPromise<T>;
  /** Must match the one `list` uses, or the watch would report objects the list never had. */
  labelSelector?: string;
  log: Logger;
  backoff?: BackoffOptions;
  /** Called on every restart after an error (for a metric). */
  onRestart?: (resource: string) => void;
  /**
   * The resource is an optional CRD (Gateway API routes and policies): while the API server
   * answers 404 the watch keeps checking, but says so once, at info, instead of warning on every
   * retry of a cluster that simply does not have it.
   */
  optional?: boolean;
}

export function watchResource<T extends KubernetesObject>(opts: ResourceWatchOptions<T>): ResourceWatch<T> {
  const { resource, log } = opts;
  const informer: Informer<T> & ObjectCache<T> = makeInformer<T>(opts.kubeConfig, opts.path, opts.list, opts.labelSelector);
  const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...opts.backoff });
  const handlers: WatchHandler<T>[] = [];
  let stopped = true;
  let isSynced = false;
  let isHealthy = false;
  let failedDuringStart = false;
  let restartTimer: NodeJS.Timeout | undefined;
  let markSynced!: () => void;
  const whenSynced = new Promise<void>((resolve) => (markSynced = resolve));

  const dispatch = (event: WatchEvent) => (obj: T) => {
    for (const h of handlers) {
      try {
        h(event, obj);
      } catch (err) {
        // A handler bug must not kill the watch (the library would swallow it mid-update).
        log.error('watch handler failed', { resource, event, error: err });
      }
    }
  };
  informer.on('add', dispatch('add'));
  informer.on('update', dispatch('update'));
  informer.on('delete', dispatch('delete'));

  let absentSaid = false;
  const scheduleRestart = (err: unknown): void => {
    isHealthy = false;
    if (stopped || restartTimer) return;
    const delayMs = backoff.next();
    if (opts.optional && httpStatus(err) === 404) {
      if (!absentSaid) log.info('resource not served (its CRD is not installed); checking again quietly', { resource });
      absentSaid = true;
    } else log.warn('watch failed; restarting', { resource, error: apiErrorSummary(err), attempt: backoff.attempts, inMs: delayMs });
    opts.onRestart?.(resource);
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      void run();
    }, delayMs);
  };

  informer.on('error', (err?: unknown) => {
    if (stopped) return; // stop() aborts the request, which reports itself as an error
    failedDuringStart = true;
    scheduleRestart(err);
  });

  // informer.start() resolves once the list has loaded and the watch request is open, or once it
  // has reported an error to the handler above; the flag tells the two apart.
  const run = async (): Promise<void> => {
    if (stopped) return;
    failedDuringStart = false;
    try {
      await informer.start();
    } catch (err) {
      // Not expected (the informer reports through 'error'), but a throw must not end the loop.
      scheduleRestart(err);
      return;
    }
    if (stopped || failedDuringStart) return;
    backoff.reset();
    isHealthy = true;
    absentSaid = false;
    if (!isSynced) {
      isSynced = true;
      log.info('watch synced', { resource, objects: informer.list().length });
      markSynced();
    }
  };

  return {
    resource,
    get: (name, namespace) => informer.get(name, namespace),
    list: (namespace) => informer.list(namespace),
    onChange: (handler) => void handlers.push(handler),
    synced: () => isSynced,
    whenSynced,
    healthy: () => isHealthy,
    start() {
      if (!stopped) return;
      stopped = false;
      void run();
    },
    async stop() {
      stopped = true;
      isHealthy = false;
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = undefined;
      await informer.stop();
    },
  };
}
