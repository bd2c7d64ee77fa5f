// The mesh CA as the controller's agent server uses it: one root, fixed issuance settings.

import { CaError } from './errors.ts';
import type { CaRoot } from './root.ts';
import { signWorkloadCsr, type SignedCertificate, type WorkloadIdentity } from './sign.ts';

export type MeshCaOptions = {
  /** Workload certificate lifetime; DESIGN.md fixes 24 h. */
  ttlMs?: number;
  /** Clock-skew allowance subtracted from notBefore. */
  backdateMs?: number;
};

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_BACKDATE_MS = 5 * 60 * 1000;

export class MeshCa {
  readonly root: CaRoot;
  readonly ttlMs: number;
  readonly backdateMs: number;

  constructor(root: CaRoot, options: MeshCaOptions = {}) {
    const ttlMs = options.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    const backdateMs = options.backdateMs ?? DEFAULT_BACKDATE_MS;
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
