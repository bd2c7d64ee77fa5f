// The node's heartbeat: its Lease in kube-node-lease, renewed every 10 s (the node lifecycle
// controller marks a node NotReady when the lease expires). Owned by the Node, so that it goes
// when the Node is deleted.
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { apiErrorSummary, httpStatus } from './errors.ts';
import type { Logger } from '../../api/log.ts';

export const LEASE_NAMESPACE = 'kube-node-lease';

export interface LeaseOptions {
  coordination: CoordinationV1Api;
  nodeName: string;
  nodeUID: string;
  log: Logger;
  intervalMs?: number;
  durationSeconds?: number;
}

export class LeaseRenewer {
  readonly #o: LeaseOptions;
  #lease: V1Lease | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failures = 0;

  constructor(opts: LeaseOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#stopped = false;
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  async #tick(): Promise<void> {
    const interval = this.#o.intervalMs ?? 10_000;
    let next = interval;
    try {
      await this.renew();
      this.#failures = 0;
    } catch (err) {
      // Retry sooner than the interval, as the kubelet does: a lease must not lapse over one error.
      next = Math.min(interval, 200 * 2 ** this.#failures++);
      this.#lease = undefined;
      this.#o.log.warn('lease renewal failed', { err: apiErrorSummary(err), retryInMs: next });
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#tick(), next);
  }

  /** Renews the lease once (creating it if needed). */
  async renew(): Promise<void> {
    const { coordination, nodeName } = this.#o;
    if (!this.#lease) {
      try {
        this.#lease = await coordination.readNamespacedLease({ name: nodeName, namespace: LEASE_NAMESPACE });
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
        this.#lease = await coordination.createNamespacedLease({ namespace: LEASE_NAMESPACE, body: this.#fresh() });
        return;
      }
    }
    const lease = this.#lease;
    const acquire = lease.spec?.acquireTime;
    const body: V1Lease = {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: nodeName,
        leaseDurationSeconds: this.#o.durationSeconds ?? 40,
        renewTime: new V1MicroTime(),
        // MicroTime needs six fractional digits on the wire; a plain Date would send three.
        ...(acquire ? { acquireTime: new V1MicroTime(new Date(acquire)) } : {}),
      },
    };
    this.#lease = await coordination.replaceNamespacedLease({ name: nodeName, namespace: LEASE_NAMESPACE, body });
  }

  #fresh(): V1Lease {
    const { nodeName, nodeUID } = this.#o;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: nodeName,
        namespace: LEASE_NAMESPACE,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: nodeUID }],
      },
      spec: { holderIdentity: nodeName, leaseDurationSeconds: this.#o.durationSeconds ?? 40, renewTime: new V1MicroTime() },
    };
  }
}
