// Which pods on this node are captured, kept in step with the nftables sets.
//
// Two paths lead here. The CNI plugin's ADD makes enrolment synchronous for a new pod: its
// containers start only once its traffic is captured. The reconcile loop covers the rest: pods
// that existed before the agent (or before the plugin was installed), and pods whose opt-in
// changes later (annotation or namespace label edited). It takes the desired set from the store
// (meshed workloads on this node) and finds a pod's host-side interface through the node's route
// to the pod's IP, which is how a ptp or bridge CNI reaches the pod.
import { execFile } from 'node:child_process';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Attachment, GcResponse, PodAddRequest, PodAddResponse, PodCheckRequest, PodCheckResponse, PodDelRequest, PodDelResponse, StatusResponse } from '../../api/cni.ts';
import type { Workload } from '../../api/agent-sync.ts';
import { EnrollerError, type Enroller } from '../cni/enroller.ts';
import type { Redirector } from '../redirect/nftables.ts';
import type { StateStore } from '../state/store.ts';

export interface Enrolment {
  /** `<namespace>/<name>` */
  key: string;
  uid: string;
  hostInterface: string;
  ips: string[];
  /** Set when the CNI plugin enrolled the pod; empty when the reconcile loop did. */
  containerId: string;
  ifname: string;
  /** The kubelet's probe ports, exempt from node capture (redirect/rules.ts). */
  probePorts?: number[];
}

export interface NodeEnrollerOptions {
  node: string;
  store: StateStore;
  redirector: Redirector;
  /** Where enrolments are checkpointed, so a restarted agent rebuilds exactly the same sets. */
  stateFile: string;
  /** How long ADD waits for the controller to tell us about a just-scheduled pod; less than the
   * plugin's own timeout (5 s), so that the plugin hears a reason rather than a cut connection. */
  waitForWorkloadMs?: number;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export class NodeEnroller implements Enroller {
  readonly #o: NodeEnrollerOptions;
  readonly #enrolled = new Map<string, Enrolment>(); // by pod UID
  #queue: Promise<unknown> = Promise.resolve();
  #reconcileTimer: NodeJS.Timeout | undefined;

  constructor(o: NodeEnrollerOptions) {
    this.#o = o;
  }

  /** Restores the checkpoint and replaces the table in one transaction (no window without capture). */
  async start(): Promise<void> {
    try {
      const saved = JSON.parse(await readFile(this.#o.stateFile, 'utf8')) as Enrolment[];
      for (const e of saved) {
      this.#enrolled.set(e.uid, e);
      this.#o.store.setLocalIPs(e.uid, e.ips);
    }
    } catch {
      /* first start */
    }
    await this.#o.redirector.sync([...this.#enrolled.values()]);
    this.#o.store.onChange(() => this.scheduleReconcile());
    this.scheduleReconcile();
  }

  enrolments(): Enrolment[] {
    return [...this.#enrolled.values()];
  }


  // Changes are serialised: nft transactions and the checkpoint must follow one order.
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }

  async #save(): Promise<void> {
    await writeFile(`${this.#o.stateFile}.tmp`, JSON.stringify([...this.#enrolled.values()]), { mode: 0o600 });
    await rename(`${this.#o.stateFile}.tmp`, this.#o.stateFile);
  }

  async #waitForWorkload(uid: string, key: string): Promise<Workload | undefined> {
    const find = () => {
      const w = uid ? this.#o.store.workloadByUID(uid) : this.#o.store.workload(key);
      return w && w.node === this.#o.node ? w : undefined;
    };
    const found = find();
    if (found) return found;
    return new Promise((resolve) => {
      const off = this.#o.store.onChange(() => {
        const w = find();
        if (w) {
          clearTimeout(timer);
          off();
          resolve(w);
        }
      });
      const timer = setTimeout(() => {
        off();
        resolve(undefined);
      }, this.#o.waitForWorkloadMs ?? 3000);
    });
  }

  async enrol(req: PodAddRequest): Promise<PodAddResponse> {
    const key = `${req.pod.namespace}/${req.pod.name}`;
    const w = await this.#waitForWorkload(req.pod.uid, key);
    // Unknown after the wait: answer "not ready", so that the plugin decides from the API server
    // (an unmeshed pod starts; a meshed one is retried) rather than failing every pod.
    if (!w) throw new EnrollerError('NOT_READY', `the controller has not announced pod ${key} yet`);
    if (!w.meshed) return { result: 'notMeshed', reason: `${key} has not opted in` };
    if (!req.hostInterface) throw Object.assign(new Error(`no host-side interface for ${key} in prevResult`), { code: 'NO_HOST_INTERFACE' });
    const e: Enrolment = { key, uid: w.uid, hostInterface: req.hostInterface, ips: req.ips, containerId: req.containerId, ifname: req.ifname, probePorts: w.probePorts ?? [] };
    await this.#serial(async () => {
      await this.#o.redirector.enrol(e);
      this.#enrolled.set(e.uid, e);
      this.#o.store.setLocalIPs(e.uid, e.ips);
      await this.#save();
    });
    this.#o.log('info', 'pod enrolled', { pod: key, ips: e.ips, via: 'cni' });
    return { result: 'enrolled' };
  }

  async release(req: PodDelRequest): Promise<PodDelResponse> {
    const e = [...this.#enrolled.values()].find(
      (x) => (x.containerId === req.containerId && x.ifname === req.ifname) || (req.pod.uid !== '' && x.uid === req.pod.uid),
    );
    if (!e) return { result: 'notEnrolled' };
    await this.#releaseOne(e, 'cni');
    return { result: 'released' };
  }

  async #releaseOne(e: Enrolment, via: string): Promise<void> {
    await this.#serial(async () => {
      await this.#o.redirector.release(e);
      this.#enrolled.delete(e.uid);
      this.#o.store.clearLocalIPs(e.ips);
      await this.#save();
    });
    this.#o.log('info', 'pod released', { pod: e.key, via });
  }

  async check(req: PodCheckRequest): Promise<PodCheckResponse> {
    const w = req.pod.uid ? this.#o.store.workloadByUID(req.pod.uid) : this.#o.store.workload(`${req.pod.namespace}/${req.pod.name}`);
    if (w && !w.meshed) return { result: 'notMeshed', reason: 'not opted in' };
    const e = [...this.#enrolled.values()].find((x) => x.containerId === req.containerId && x.ifname === req.ifname);
    if (!e) return w ? { result: 'missing', reason: 'the pod is meshed but not enrolled' } : { result: 'notMeshed', reason: 'unknown pod' };
    return (await this.#o.redirector.isEnrolled(e)) ? { result: 'enrolled' } : { result: 'missing', reason: 'nftables sets lack the pod' };
  }

  async gc(valid: readonly Attachment[]): Promise<GcResponse> {
    const keep = new Set(valid.map((a) => `${a.containerId}/${a.ifname}`));
    let released = 0;
    for (const e of [...this.#enrolled.values()]) {
      if (e.containerId && !keep.has(`${e.containerId}/${e.ifname}`)) {
        await this.#releaseOne(e, 'gc');
        released++;
      }
    }
    return { released };
  }

  ready(): StatusResponse {
    return this.#o.store.epoch ? { ready: true } : { ready: false, reason: 'no workload state from the controller yet' };
  }

  scheduleReconcile(): void {
    if (this.#reconcileTimer) return;
    this.#reconcileTimer = setTimeout(() => {
      this.#reconcileTimer = undefined;
      this.reconcile().catch((e: unknown) => this.#o.log('error', 'reconcile failed', { error: (e as Error).message }));
    }, 50);
  }

  async #addProbePorts(e: Enrolment, w: Workload): Promise<void> {
    if (missingProbePorts(e, w).length === 0) return;
    const next: Enrolment = { ...e, probePorts: [...new Set([...(e.probePorts ?? []), ...(w.probePorts ?? [])])].sort((a, b) => a - b) };
    await this.#serial(async () => {
      await this.#o.redirector.enrol(next);
      this.#enrolled.set(next.uid, next);
      await this.#save();
    });
    this.#o.log('info', 'probe ports exempted from node capture', { pod: e.key, probePorts: next.probePorts });
  }

  /** Level-based: makes the enrolled set equal the meshed workloads on this node. */
  async reconcile(): Promise<void> {
    if (!this.#o.store.epoch) return; // nothing authoritative yet: keep what we have
    const desired = new Map(this.#o.store.workloadsOnNode(this.#o.node).filter((w) => w.meshed && w.ips.length > 0).map((w) => [w.uid, w]));
    for (const e of [...this.#enrolled.values()]) {
      const w = this.#o.store.workloadByUID(e.uid);
      // A pod the controller no longer lists is released by CNI DEL or GC; one that opted out goes now.
      if (w && !w.meshed) await this.#releaseOne(e, 'reconcile');
      else if (w) await this.#addProbePorts(e, w);
    }
    for (const w of desired.values()) {
      if (this.#enrolled.has(w.uid)) continue;
      const hostInterface = await routeInterface(w.ips[0] as string);
      if (!hostInterface) continue; // not wired yet: CNI ADD will enrol it
      const e: Enrolment = { key: w.key, uid: w.uid, hostInterface, ips: w.ips, containerId: '', ifname: '', probePorts: w.probePorts ?? [] };
      await this.#serial(async () => {
        await this.#o.redirector.enrol(e);
        this.#enrolled.set(e.uid, e);
        await this.#save();
      });
      this.#o.log('info', 'pod enrolled', { pod: w.key, ips: w.ips, via: 'reconcile' });
    }
  }
}

/** Probe ports are fixed for a pod's life (its spec is immutable), but an enrolment restored
 * from a checkpoint written before they were known has none: without them the node capture would
 * take the kubelet's probes too. Adding is idempotent, so this only ever grows the exemption. */
function missingProbePorts(e: Enrolment, w: Workload): number[] {
  const have = new Set(e.probePorts ?? []);
  return (w.probePorts ?? []).filter((p) => !have.has(p));
}

/** The interface the node routes a pod IP through (the pod's host-side veth), if any. */
export function routeInterface(ip: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('ip', ['-j', 'route', 'get', ip], { timeout: 5000 }, (err, stdout) => {
      if (err) return resolve(undefined);
      try {
        const [r] = JSON.parse(String(stdout)) as { dev?: string; gateway?: string }[];
        // Through a gateway means another node: not ours to capture.
        resolve(r?.dev && !r.gateway && r.dev !== 'lo' ? r.dev : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}
