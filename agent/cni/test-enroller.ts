// A recording Enroller for tests: the one permitted stand-in, because the agent's real enroller
// (nftables sets) is built elsewhere. It keeps enrolments in memory, answers by a configurable
// opt-in rule, and records every call so a test can check what the CNI server passed on.
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
import type { Enroller } from './enroller.ts';

export type RecordedCall =
  | { op: 'enrol'; req: PodAddRequest }
  | { op: 'release'; req: PodDelRequest }
  | { op: 'check'; req: PodCheckRequest }
  | { op: 'gc'; valid: Attachment[] };

export class RecordingEnroller implements Enroller {
  readonly calls: RecordedCall[] = [];
  readonly enrolled = new Map<string, PodAddRequest>();
  readiness: StatusResponse = { ready: true };
  /** Which pods are meshed; by default those in namespaces whose name starts with "mesh". */
  isMeshed: (req: PodAddRequest) => boolean = (req) => req.pod.namespace.startsWith('mesh');
  /** When set, the next enrol() throws it (once). */
  failNextEnrol: Error | null = null;
  /** How long enrol() takes, as programming nftables does for the real enroller. */
  enrolDelayMs = 0;

  async enrol(req: PodAddRequest): Promise<PodAddResponse> {
    this.calls.push({ op: 'enrol', req });
    const failure = this.failNextEnrol;
    this.failNextEnrol = null;
    if (this.enrolDelayMs > 0) await new Promise((r) => setTimeout(r, this.enrolDelayMs));
    if (failure !== null) throw failure;
    if (!this.isMeshed(req)) return { result: 'notMeshed', reason: 'test: not opted in' };
    this.enrolled.set(key(req), req);
    return { result: 'enrolled' };
  }

  release(req: PodDelRequest): Promise<PodDelResponse> {
    this.calls.push({ op: 'release', req });
    return Promise.resolve({ result: this.enrolled.delete(key(req)) ? 'released' : 'notEnrolled' });
  }

  check(req: PodCheckRequest): Promise<PodCheckResponse> {
    this.calls.push({ op: 'check', req });
    if (this.enrolled.has(key(req))) return Promise.resolve({ result: 'enrolled' });
    if (!this.isMeshed(req)) return Promise.resolve({ result: 'notMeshed', reason: 'test: not opted in' });
    return Promise.resolve({ result: 'missing', reason: 'test: no enrolment for this attachment' });
  }

  gc(valid: readonly Attachment[]): Promise<GcResponse> {
    this.calls.push({ op: 'gc', valid: [...valid] });
    const keep = new Set(valid.map(key));
    let released = 0;
    for (const k of [...this.enrolled.keys()]) {
      if (!keep.has(k)) {
        this.enrolled.delete(k);
        released++;
      }
    }
    return Promise.resolve({ released });
  }

  ready(): StatusResponse {
    return this.readiness;
  }
}

const key = (a: Attachment): string => `${a.containerId}/${a.ifname}`;
