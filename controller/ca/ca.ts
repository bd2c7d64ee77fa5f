// The mesh CA as the controller's agent server uses it: one root, fixed issuance settings.

import { CaError } from './errors.ts';
import type { CaRoot } from './root.ts';
import { signWorkloadCsr, type SignedCertificate, type WorkloadIdentity } from './sign.ts';

export type MeshCaOptions = {
  /** Workload certificate lifetime (default 24 h, at least MIN_WORKLOAD_TTL_MS). */
  ttlMs?: number;
  /** Clock-skew allowance subtracted from notBefore (default: 5 min, at most a tenth of ttlMs). */
  backdateMs?: number;
};

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 60 * 60 * 1000;
/**
 * The shortest lifetime an operator may configure (controller/config.ts; tests go lower). Below
 * it, the margin between the agent's renewal (at about half the lifetime) and expiry is too small
 * for a controller restart or a few failed fetches: workloads would lose their certificates, and
 * with them their meshed connections, in ordinary operation.
 */
export const MIN_WORKLOAD_TTL_MS = 60 * 1000;
export const DEFAULT_BACKDATE_MS = 5 * 60 * 1000;

export class MeshCa {
  readonly root: CaRoot;
  readonly ttlMs: number;
  readonly backdateMs: number;

  constructor(root: CaRoot, options: MeshCaOptions = {}) {
    const ttlMs = options.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    // The agent renews at half of notAfter - notBefore: a backdate as long as a short lifetime
    // would put the renewal point at issuance, so the default shrinks with the lifetime.
    const backdateMs = options.backdateMs ?? Math.min(DEFAULT_BACKDATE_MS, Math.floor(ttlMs / 10));
    if (!Number.isFinite(ttlMs) || ttlMs < 1000) throw new CaError('CONFIG_INVALID', `ttlMs must be at least 1000, got ${ttlMs}`);
    if (!Number.isFinite(backdateMs) || backdateMs < 0 || backdateMs > ttlMs) {
      throw new CaError('CONFIG_INVALID', `backdateMs must be between 0 and ttlMs, got ${backdateMs}`);
    }
    this.root = root;
    this.ttlMs = ttlMs;
    this.backdateMs = backdateMs;
  }

  get trustDomain(): string {
    return this.root.trustDomain;
  }

  /** The PEM bundle agents must trust. */
  get trustBundlePem(): string {
    return this.root.certificatePem;
  }

  /**
   * Issues a certificate for `identity`, which the caller has already authorized for the
   * requesting agent (see authorizeIdentity). Throws CaError on a bad request.
   */
  sign(csrPem: string, identity: WorkloadIdentity, now?: Date): Promise<SignedCertificate> {
    return signWorkloadCsr(this.root, csrPem, identity, { ttlMs: this.ttlMs, backdateMs: this.backdateMs, now });
  }
}
