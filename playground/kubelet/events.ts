// Kubernetes Events from the kubelet (FailedCreatePodSandBox, Started, BackOff, Unhealthy, ...),
// written as core/v1 Events with source "kubelet" like the real one's, and aggregated the way its
// event correlator does: a repeat of the same event bumps the count instead of adding an object.
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import { apiErrorSummary } from './errors.ts';
import { mergePatch } from './kube-api.ts';
import type { Logger } from '../../api/log.ts';
import type { PodRef } from './pod-state-store.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventSink {
  /** Records an event about a pod (fieldPath names a container: spec.containers{app}). */
  pod(pod: PodRef, type: EventType, reason: string, message: string, fieldPath?: string): void;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  last: number;
}

// The correlator's window: the same event within it is a repeat.
const REPEAT_WINDOW_MS = 10 * 60_000;
const MAX_TRACKED = 4096;

export class EventRecorder implements EventSink {
  readonly #core: CoreV1Api;
  readonly #node: string;
  readonly #log: Logger;
  readonly #seen = new Map<string, Seen>();
  #seq = 0;

  constructor(core: CoreV1Api, nodeName: string, log: Logger) {
    this.#core = core;
    this.#node = nodeName;
    this.#log = log;
  }

  pod(pod: PodRef, type: EventType, reason: string, message: string, fieldPath?: string): void {
    void this.#record(pod, type, reason, message, fieldPath);
  }

  async #record(pod: PodRef, type: EventType, reason: string, message: string, fieldPath: string | undefined): Promise<void> {
    const key = [pod.uid, fieldPath ?? '', type, reason, message].join('\u0000');
    const now = Date.now();
    const seen = this.#seen.get(key);
    try {
      if (seen && now - seen.last < REPEAT_WINDOW_MS) {
        seen.count++;
        seen.last = now;
        await this.#core.patchNamespacedEvent(
          { name: seen.name, namespace: seen.namespace, body: { count: seen.count, lastTimestamp: new Date(now).toISOString() } },
          mergePatch,
        );
        return;
      }
      // Like the kubelet's <name>.<unix nanoseconds in hex>; the sequence keeps same-millisecond events apart.
      const name = `${pod.name}.${(BigInt(now) * 1_000_000n + BigInt(this.#seq++ % 1_000_000)).toString(16)}`;
      const event: CoreV1Event = {
        metadata: { name, namespace: pod.namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid, ...(fieldPath ? { fieldPath } : {}) },
        reason,
        message,
        type,
        source: { component: 'kubelet', host: this.#node },
        reportingComponent: 'kubelet',
        reportingInstance: this.#node,
        firstTimestamp: new Date(now),
        lastTimestamp: new Date(now),
        count: 1,
      };
      await this.#core.createNamespacedEvent({ namespace: pod.namespace, body: event });
      if (this.#seen.size >= MAX_TRACKED) this.#seen.delete(this.#seen.keys().next().value as string);
      this.#seen.set(key, { name, namespace: pod.namespace, count: 1, last: now });
    } catch (err) {
      // Events are best effort, as in the kubelet: a lost event never blocks pod work.
      this.#seen.delete(key);
      this.#log.debug('event not recorded', { reason, err: apiErrorSummary(err) });
    }
  }
}

/** fieldPath of a container, as events name it. */
export function containerFieldPath(kind: 'init' | 'regular', name: string): string {
  return kind === 'init' ? `spec.initContainers{${name}}` : `spec.containers{${name}}`;
}
