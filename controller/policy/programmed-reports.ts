// Which policies the agents connected to *other* controller replicas enforce.
//
// Every replica serves agents, but only the leader writes status, and a replica only knows the
// ACKs of its own agents. With two replicas about half the nodes talk to the standby, so the
// leader alone would report those nodes as "never connected" and a policy would stay
// Programmed=False for ever. Each non-leader replica therefore publishes what its agents hold in
// a ConfigMap of its own (a distribution report, in Istio's words), and the leader counts a node
// as programmed when its own agent or a fresh report says so.
//
// The report names policies by key and in-force generation, never by store revision: revisions
// are numbered per replica (each has its own epoch), generations are the API server's. A node is
// listed for a policy only when that replica itself requires the policy there and the agent has
// acknowledged a revision carrying it (status.ts's nodeLag, the same test the leader applies to
// its own agents).
//
// A report is trusted while it is fresh: replicas rewrite theirs at least every `heartbeatMs`
// and the leader ignores one it has not seen change for three heartbeats (a replica that died
// without deleting its report), measured on the leader's own clock, not the writer's.
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import { apiErrorSummary, httpStatus } from '../../api/kube-errors.ts';
import type { Logger } from '../../api/log.ts';
import type { LeaderElector } from '../kube/leader.ts';
import { watchResource } from '../kube/resource-watch.ts';
import type { ResourceWatch } from '../kube/resource-watch.ts';

export const REPORT_LABEL = 'weft.dev/programmed-report';
const REPORT_KEY = 'report.json';
// A ConfigMap holds at most 1 MiB; leave room for metadata. Beyond this the report lists no
// policies (those nodes then show as pending on the leader, which is honest, not wrong).
const MAX_REPORT_BYTES = 900 * 1024;

/** What one replica's agents hold. Node lists are indices into `nodes` to keep 1,000-node reports small. */
export interface ProgrammedReport {
  replica: string;
  /** Nodes whose agent has an open stream to this replica. */
  nodes: string[];
  /** `${kind}/${namespace}/${name}` → the in-force generation and the nodes that enforce it. */
  policies: Record<string, { generation: number; nodes: number[] }>;
}

/** What the leader may conclude about one node for one policy from the other replicas' reports. */
export type RemoteEvidence = { held: true; replica: string } | { held: false; replica: string } | undefined;

export interface ReportSource {
  /** The in-force generation of each policy and the nodes of this replica's agents that hold it. */
  snapshot(): Omit<ProgrammedReport, 'replica'>;
  /** Called when what snapshot() returns may have changed; returns an unsubscribe function. */
  onChange(fn: () => void): () => void;
}

export interface ProgrammedReportsOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  identity: string;
  leader: LeaderElector;
  source: ReportSource;
  log: Logger;
  /** Called when another replica's report changed (the leader recomputes status). */
  onRemoteChange: () => void;
  heartbeatMs?: number;
  debounceMs?: number;
  now?: () => number;
}

export function reportName(identity: string): string {
  const safe = identity
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `weft-programmed-${safe}`.slice(0, 253);
}

/** Parses a report; undefined for anything malformed (a report is advisory: never trust a bad one). */
export function parseReport(text: string | undefined): ProgrammedReport | undefined {
  if (!text) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<ProgrammedReport>;
  if (typeof r.replica !== 'string' || !Array.isArray(r.nodes) || !r.nodes.every((n) => typeof n === 'string')) return undefined;
  if (typeof r.policies !== 'object' || r.policies === null) return undefined;
  for (const p of Object.values(r.policies)) {
    if (typeof p !== 'object' || p === null || !Number.isInteger(p.generation) || !Array.isArray(p.nodes)) return undefined;
    if (!p.nodes.every((i) => Number.isInteger(i) && i >= 0 && i < r.nodes!.length)) return undefined;
  }
  return r as ProgrammedReport;
}

/**
 * An index over fresh reports for one status pass: per policy and generation, which node is held
 * by which replica, and which replica each node is connected to.
 */
export class RemoteProgrammed {
  readonly #held = new Map<string, Map<string, string>>();
  readonly #connected = new Map<string, string>();

  constructor(reports: readonly ProgrammedReport[]) {
    for (const r of reports) {
      for (const n of r.nodes) this.#connected.set(n, r.replica);
      for (const [key, p] of Object.entries(r.policies)) {
        const k = `${key}@${p.generation}`;
        let nodes = this.#held.get(k);
        if (!nodes) this.#held.set(k, (nodes = new Map<string, string>()));
        for (const i of p.nodes) nodes.set(r.nodes[i]!, r.replica);
      }
    }
  }

  get empty(): boolean {
    return this.#connected.size === 0;
  }

  /** Evidence about `node` for policy `key` at `generation` (the leader's in-force generation). */
  evidence(key: string, generation: number | undefined, node: string): RemoteEvidence {
    const by = generation === undefined ? undefined : this.#held.get(`${key}@${generation}`)?.get(node);
    if (by) return { held: true, replica: by };
    const replica = this.#connected.get(node);
    return replica ? { held: false, replica } : undefined;
  }
}

export class ProgrammedReports {
  readonly #o: ProgrammedReportsOptions;
  readonly #log: Logger;
  readonly #core: CoreV1Api;
  readonly #name: string;
  readonly #watch: ResourceWatch<V1ConfigMap>;
  /** Report name → (its resourceVersion, when this process saw that version first). */
  readonly #seen = new Map<string, { rv: string; at: number }>();
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #lastWritten = '';
  #lastWriteAt = 0;
  #writing: Promise<void> | undefined;
  #stopped = true;

  constructor(o: ProgrammedReportsOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'programmed-reports' });
    this.#core = o.kubeConfig.makeApiClient(CoreV1Api);
    this.#name = reportName(o.identity);
    this.#now = o.now ?? (() => performance.now());
    const core = this.#core;
    this.#watch = watchResource<V1ConfigMap>({
      kubeConfig: o.kubeConfig,
      resource: 'configmaps (programmed reports)',
      path: `/api/v1/namespaces/${o.namespace}/configmaps`,
      labelSelector: `${REPORT_LABEL}=true`,
      list: () => core.listNamespacedConfigMap({ namespace: o.namespace, labelSelector: `${REPORT_LABEL}=true` }),
      log: this.#log,
    });
    this.#watch.onChange((_event, cm) => {
      if (cm.metadata?.name === this.#name) return;
      this.#o.onRemoteChange();
    });
  }

  start(): void {
    this.#stopped = false;
    this.#watch.start();
    this.#unsubscribe = this.#o.source.onChange(() => this.#schedule());
    this.#o.leader.onChange(() => this.#schedule());
    const beat = this.#o.heartbeatMs ?? 10_000;
    this.#heartbeat = setInterval(() => this.#schedule(0), beat);
    this.#heartbeat.unref();
    this.#schedule(0);
  }

  /** Stops publishing and deletes this replica's report, so the leader does not wait out its staleness. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    this.#unsubscribe?.();
    await this.#writing;
    await this.#watch.stop();
    await this.#delete();
  }

  /** Fresh reports of the other replicas (what the leader's status pass counts). */
  remote(): RemoteProgrammed {
    const staleMs = 3 * (this.#o.heartbeatMs ?? 10_000);
    const now = this.#now();
    const fresh: ProgrammedReport[] = [];
    const live = new Set<string>();
    for (const cm of this.#watch.list(this.#o.namespace)) {
      const name = cm.metadata?.name ?? '';
      if (name === this.#name) continue;
      live.add(name);
      const rv = cm.metadata?.resourceVersion ?? '';
      const seen = this.#seen.get(name);
      if (!seen || seen.rv !== rv) this.#seen.set(name, { rv, at: now });
      else if (now - seen.at > staleMs) continue;
      const report = parseReport(cm.data?.[REPORT_KEY]);
      if (report) fresh.push(report);
    }
    for (const name of this.#seen.keys()) if (!live.has(name)) this.#seen.delete(name);
    return new RemoteProgrammed(fresh);
  }

  #schedule(delayMs = this.#o.debounceMs ?? 1_000): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#writing) {
        this.#schedule();
        return;
      }
      this.#writing = this.#publish().finally(() => (this.#writing = undefined));
    }, delayMs);
    this.#timer.unref();
  }

  async #publish(): Promise<void> {
    // The leader reads the others; its own agents it already knows. A report it left from before
    // it led would only go stale, so it removes it.
    if (this.#o.leader.isLeader()) {
      if (this.#lastWritten !== '') await this.#delete();
      return;
    }
    let report: ProgrammedReport = { replica: this.#o.identity, ...this.#o.source.snapshot() };
    let text = JSON.stringify(report);
    if (text.length > MAX_REPORT_BYTES) {
      this.#log.warn('programmed report too large; publishing connections only', { bytes: text.length });
      report = { ...report, policies: {} };
      text = JSON.stringify(report);
    }
    const beat = this.#o.heartbeatMs ?? 10_000;
    // Unchanged content is rewritten only as a heartbeat, so the leader can tell alive from dead.
    if (text === this.#lastWritten && this.#now() - this.#lastWriteAt < beat / 2) return;
    const body: V1ConfigMap = {
      metadata: { name: this.#name, namespace: this.#o.namespace, labels: { [REPORT_LABEL]: 'true', 'app.kubernetes.io/name': 'weft' } },
      // A heartbeat must change the object, or the API server would not bump its resourceVersion.
      data: { [REPORT_KEY]: text, written: new Date().toISOString() },
    };
    try {
      try {
        await this.#core.replaceNamespacedConfigMap({ name: this.#name, namespace: this.#o.namespace, body });
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
        await this.#core.createNamespacedConfigMap({ namespace: this.#o.namespace, body });
      }
      this.#lastWritten = text;
      this.#lastWriteAt = this.#now();
    } catch (err) {
      // Status on the leader shows this replica's nodes as pending until a write succeeds.
      this.#log.warn('programmed report write failed', { name: this.#name, error: apiErrorSummary(err) });
    }
  }

  async #delete(): Promise<void> {
    try {
      await this.#core.deleteNamespacedConfigMap({ name: this.#name, namespace: this.#o.namespace });
    } catch (err) {
      if (httpStatus(err) !== 404) this.#log.warn('programmed report delete failed', { name: this.#name, error: apiErrorSummary(err) });
    }
    this.#lastWritten = '';
  }
}
