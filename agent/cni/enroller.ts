// What the CNI server needs from the rest of the agent. The real implementation programs the
// nftables sets of DESIGN.md's "Traffic redirection"; the server only speaks the contract.
import type {
  Attachment,
  GcResponse,
  PodAddRequest,
  PodAddResponse,
  PodCheckRequest,
  PodCheckResponse,
  PodDelRequest,
  PodDelResponse,
  StatusResponse,
} from '../../api/cni.ts';

export interface Enroller {
  /**
   * Decide whether the pod is meshed and, if so, put its redirection in place before resolving:
   * the pod's containers start as soon as the plugin hears back. Called again for the same
   * attachment only after a release (the runtime never repeats ADD without DEL).
   */
  enrol(req: PodAddRequest): Promise<PodAddResponse>;
  /** Remove the pod's redirection. Idempotent: releasing an unknown pod answers notEnrolled. */
  release(req: PodDelRequest): Promise<PodDelResponse>;
  /** Whether the redirection ADD put in place is still there. */
  check(req: PodCheckRequest): Promise<PodCheckResponse>;
  /** Release every enrolment whose attachment is not in `valid`. */
  gc(valid: readonly Attachment[]): Promise<GcResponse>;
  /**
   * Whether enrol() can decide now (e.g. the agent has synced workload state from the
   * controller). While not ready, ADD and CHECK are answered 503 NOT_READY without calling
   * enrol()/check(), and the plugin falls back to asking the API server.
   */
  ready(): StatusResponse;
}

/** Throw this (or any error with a string `code`) from an Enroller to name the failure. */
export class EnrollerError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'EnrollerError';
    this.code = code;
  }
}
