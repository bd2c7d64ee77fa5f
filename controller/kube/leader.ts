// Leader election over a coordination.k8s.io Lease, for the one job only one replica may do:
// writing status and Events on Weft's policies. Every replica serves agents; the leader also writes.
//
// The usual protocol (as client-go's leaderelection): the holder renews `renewTime` every
// `renewMs`; another replica takes the Lease once `leaseDurationSeconds` passed without a renewal.
// Writes are optimistic (resourceVersion), so two replicas racing for an expired Lease cannot both
// win. A holder that cannot renew before its lease would expire steps down first: it must not keep
// writing while another replica may already be the leader.
import { CoordinationV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Lease } from '@kubernetes/client-node';
import { apiErrorSummary, httpStatus } from '../../api/kube-errors.ts';
import type { Logger } from '../../api/log.ts';

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  /** This replica's identity (pod name). */
  identity: string;
  log: Logger;
  leaseDurationSeconds?: number;
  renewMs?: number;
  retryMs?: number;
  now?: () => Date;
}

export interface LeaderElector {
  isLeader(): boolean;
  /** Called with true when this replica becomes the leader, false when it stops being it. */
  onChange(fn: (leader: boolean) => void): void;
  start(): void;
  /** Stops, and releases the Lease if held so that another replica takes over at once. */
  stop(): Promise<void>;
}

export function createLeaderElector(o: LeaderElectionOptions): LeaderElector {
  const api = o.kubeConfig.makeApiClient(CoordinationV1Api);
  const durationS = o.leaseDurationSeconds ?? 15;
  const renewMs = o.renewMs ?? 5_000;
  const retryMs = o.retryMs ?? 2_000;
  const now = o.now ?? (() => new Date());
  const log = o.log.child({ component: 'leader-election', lease: `${o.namespace}/${o.name}` });
  const listeners: ((leader: boolean) => void)[] = [];
  let leader = false;
  let lastRenewed = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;

  const setLeader = (next: boolean, why: string): void => {
    if (next === leader) return;
    leader = next;
    log.info(next ? 'became the leader' : 'stopped being the leader', { identity: o.identity, why });
    for (const l of listeners) l(next);
  };

  const body = (previous: V1Lease | undefined): V1Lease => {
    const t = microTime(now());
    const held = previous?.spec?.holderIdentity === o.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: o.name, namespace: o.namespace, ...(previous?.metadata?.resourceVersion ? { resourceVersion: previous.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: o.identity,
        leaseDurationSeconds: durationS,
        acquireTime: held && previous?.spec?.acquireTime ? previous.spec.acquireTime : t,
        renewTime: t,
        leaseTransitions: (previous?.spec?.leaseTransitions ?? 0) + (held || !previous ? 0 : 1),
      },
    };
  };

  const tryAcquireOrRenew = async (): Promise<void> => {
    let current: V1Lease | undefined;
    try {
      current = await api.readNamespacedLease({ name: o.name, namespace: o.namespace });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
    }
    if (!current) {
      await api.createNamespacedLease({ namespace: o.namespace, body: body(undefined) });
    } else {
      const holder = current.spec?.holderIdentity;
      const renewed = current.spec?.renewTime ? new Date(current.spec.renewTime).getTime() : 0;
      const expired = renewed + (current.spec?.leaseDurationSeconds ?? durationS) * 1000 < now().getTime();
      if (holder && holder !== o.identity && !expired) {
        setLeader(false, `held by ${holder}`);
        return;
      }
      await api.replaceNamespacedLease({ name: o.name, namespace: o.namespace, body: body(current) });
    }
    lastRenewed = now().getTime();
    setLeader(true, 'lease acquired or renewed');
  };

  const loop = (): void => {
    if (stopped) return;
    tryAcquireOrRenew()
      .catch((err: unknown) => {
        // A conflict means another replica wrote first; anything else is the API server.
        if (httpStatus(err) !== 409) log.warn('lease update failed', { error: apiErrorSummary(err) });
        // Step down before the lease can expire under us: another replica may take it then.
        if (leader && now().getTime() - lastRenewed > durationS * 1000 - renewMs) setLeader(false, 'could not renew in time');
      })
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, leader ? renewMs : retryMs);
      });
  };

  return {
    isLeader: () => leader,
    onChange: (fn) => void listeners.push(fn),
    start() {
      if (!stopped) return;
      stopped = false;
      loop();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      if (!leader) return;
      setLeader(false, 'stopping');
      try {
        const current = await api.readNamespacedLease({ name: o.name, namespace: o.namespace });
        if (current.spec?.holderIdentity !== o.identity) return;
        // Released: renewTime far in the past, so the next replica need not wait the duration out.
        current.spec = { ...current.spec, renewTime: microTime(new Date(0)), leaseDurationSeconds: 1 };
        await api.replaceNamespacedLease({ name: o.name, namespace: o.namespace, body: current });
      } catch (err) {
        log.warn('could not release the lease', { error: apiErrorSummary(err) });
      }
    },
  };
}

/**
 * Lease times are MicroTime: RFC 3339 with exactly six fractional digits, which the API server
 * insists on. The client would send a Date with three, so the text goes as is.
 */
function microTime(d: Date): Date {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}
