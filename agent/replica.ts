// What the data-plane workers are told, and how (docs/agent-threads.md). The main thread owns the
// node's state and certificates; each worker holds a replica, kept current by messages sent once
// per change — a sync message as the controller sent it, a certificate as it was issued — never
// per connection.
//
// ReplicatedStore (main thread) is the node's StateStore that also forwards what it applies;
// CertificateReplica (worker) answers what the data path asks of the CertificateManager.
import type { MeshConfig, Resource, SyncMessage } from '../api/agent-sync.ts';
import { WorkloadCertificate, type IssuedCertificate } from './identity/certificate.ts';
import { StateStore, type ApplyResult } from './state/store.ts';

/** A change for the replicas, in the order the main thread made it. */
export type Replication =
  | { type: 'state'; msg: SyncMessage }
  | { type: 'local-ips'; uid: string; ips: string[] }
  | { type: 'local-ips-cleared'; ips: string[] }
  /** A certificate issued (renewed) for an identity, or none (removed, expired). */
  | { type: 'certificate'; identity: string; issued: IssuedCertificate | null };

export class ReplicatedStore extends StateStore {
  readonly #replicas = new Set<(r: Replication) => void>();
  // The local addresses the CNI reported: a replica added later needs them too.
  readonly #localIPs = new Map<string, string>();

  override apply(msg: SyncMessage): ApplyResult {
    const r = super.apply(msg);
    if (r.ok) this.#send({ type: 'state', msg });
    return r;
  }

  override setLocalIPs(uid: string, ips: string[]): void {
    super.setLocalIPs(uid, ips);
    for (const ip of ips) this.#localIPs.set(ip, uid);
    this.#send({ type: 'local-ips', uid, ips });
  }

  override clearLocalIPs(ips: string[]): void {
    super.clearLocalIPs(ips);
    for (const ip of ips) this.#localIPs.delete(ip);
    this.#send({ type: 'local-ips-cleared', ips });
  }

  /**
   * Adds a replica: it gets the state as it is now, then every change. Synchronous, so nothing
   * applied in between can be missed or sent twice.
   */
  replicate(send: (r: Replication) => void): () => void {
    if (this.epoch !== undefined) send({ type: 'state', msg: this.snapshot() });
    const byUid = new Map<string, string[]>();
    for (const [ip, uid] of this.#localIPs) byUid.set(uid, [...(byUid.get(uid) ?? []), ip]);
    for (const [uid, ips] of byUid) send({ type: 'local-ips', uid, ips });
    this.#replicas.add(send);
    return () => this.#replicas.delete(send);
  }

  /** The whole state as one snapshot message. */
  snapshot(): SyncMessage {
    const resources: Resource[] = [
      ...this.workloads().map((value) => ({ kind: 'Workload' as const, value })),
      ...this.services().map((value) => ({ kind: 'Service' as const, value })),
      ...this.accessPolicies().map((value) => ({ kind: 'AccessPolicy' as const, value })),
      ...this.mtlsPolicies().map((value) => ({ kind: 'MeshTLSPolicy' as const, value })),
    ];
    const config: MeshConfig = this.config;
    return { type: 'snapshot', epoch: this.epoch ?? '', revision: this.revision, config, resources };
  }

  #send(r: Replication): void {
    for (const send of this.#replicas) send(r);
  }
}

/** Applies a replication message to a worker's store and certificates. Returns why it failed, if it did. */
export function applyReplication(r: Replication, store: StateStore, certificates: CertificateReplica): string | undefined {
  switch (r.type) {
    case 'state': {
      const a = store.apply(r.msg);
      return a.ok ? undefined : a.reason;
    }
    case 'local-ips':
      return void store.setLocalIPs(r.uid, r.ips);
    case 'local-ips-cleared':
      return void store.clearLocalIPs(r.ips);
    case 'certificate':
      try {
        certificates.set(r.identity, r.issued);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
  }
}

/** The main thread's certificate as the replicas receive it: the PEMs, from which each builds its own TLS context. */
export function issuedOf(cert: WorkloadCertificate | undefined): IssuedCertificate | null {
  if (!cert) return null;
  const c = cert.tlsCredentials();
  return { identity: cert.identity, keyPem: c.key, chainPem: c.cert, trustBundlePem: c.ca };
}

/** A worker's view of the node's workload certificates (what CertificateManager answers on the data path). */
export class CertificateReplica {
  readonly #current = new Map<string, WorkloadCertificate>();
  readonly #waiters = new Map<string, Set<(c: WorkloadCertificate) => void>>();

  /** Checked again here (chain, key, validity): a replica trusts nothing it cannot verify. */
  set(identity: string, issued: IssuedCertificate | null): void {
    if (!issued) return void this.#current.delete(identity);
    const cert = WorkloadCertificate.fromIssued(issued);
    this.#current.set(identity, cert);
    const waiting = this.#waiters.get(identity);
    this.#waiters.delete(identity);
    for (const w of waiting ?? []) w(cert);
  }

  certificateFor(identity: string): WorkloadCertificate | undefined {
    const c = this.#current.get(identity);
    return c && Date.now() < c.notAfter.getTime() ? c : undefined;
  }

  secureContextFor(identity: string): WorkloadCertificate['secureContext'] | undefined {
    return this.certificateFor(identity)?.secureContext;
  }

  whenReady(identity: string, signal?: AbortSignal): Promise<WorkloadCertificate> {
    const current = this.certificateFor(identity);
    if (current) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      const set = this.#waiters.get(identity) ?? new Set();
      this.#waiters.set(identity, set);
      const waiter = (c: WorkloadCertificate): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(c);
      };
      const onAbort = (): void => {
        set.delete(waiter);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      set.add(waiter);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
