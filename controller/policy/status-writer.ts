// Writes status and Events on Weft's policies — on the leader replica only.
//
// One pass computes every policy's status (status.ts) and writes the ones that changed, so that a
// burst of acknowledgements from many agents costs one write per policy, not one per node: the
// writer is debounced, and a status equal to what the object already carries is not written.
// Triggers: a store commit (a new policy revision), an agent's ACK/NACK/disconnect, a verdict
// change, a policy object change, becoming the leader, and a slow periodic pass as a backstop.
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { CoreV1Event, KubeConfig } from '@kubernetes/client-node';
import { apiErrorSummary, httpStatus } from '../../api/kube-errors.ts';
import type { Logger } from '../../api/log.ts';
import { ACCESS_POLICY_PLURAL, CONDITION, MESH_TLS_POLICY_PLURAL, POLICY_GROUP, POLICY_VERSION } from '../../api/policy/model.ts';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy, PolicyProblem } from '../../api/policy/model.ts';
import type { Workload } from '../../api/agent-sync.ts';
import type { AccessPolicy, MeshTLSPolicy } from '../../api/policy/types.gen.ts';
import type { LeaderElector } from '../kube/leader.ts';
import type { AgentRegistry } from '../server/agent-registry.ts';
import type { RevisionedStore } from '../state/store.ts';
import type { PolicyKind, PolicyReconciler, PolicySources } from './reconciler.ts';
import { accessPolicyRefProblems, selectedBy } from './refs.ts';
import { ProgrammedReports, RemoteProgrammed } from './programmed-reports.ts';
import type { ProgrammedReport } from './programmed-reports.ts';
import { computeStatus, sameStatus } from './status.ts';
import type { PolicyStatus } from './status.ts';
import { PassScheduler } from '../kube/pass-scheduler.ts';

export interface StatusWriterOptions {
  kubeConfig: KubeConfig;
  sources: PolicySources;
  store: RevisionedStore;
  registry: AgentRegistry;
  reconciler: PolicyReconciler;
  leader: LeaderElector;
  installNamespace: string;
  /** This replica, as the Events' reporting instance. */
  identity: string;
  log: Logger;
  debounceMs?: number;
  /** Debounce for agents' ACKs, NACKs and connections (status only counts them). */
  agentDebounceMs?: number;
  periodMs?: number;
  /** Publish and read the replicas' programmed reports (programmed-reports.ts); default true. */
  programmedReports?: boolean;
  /** More entries for this replica's programmed report: the routes (route/controller.ts localReport). */
  extraReport?: () => ProgrammedReport['policies'];
  /** Called too when another replica's report changed (the route controller recounts its nodes). */
  onRemoteChange?: () => void;
}

interface Selection {
  inForce: CompiledAccessPolicy | CompiledMeshTLSPolicy | undefined;
  /** The same array for as long as the selection is kept (status.ts caches what it derives from it). */
  selected: Workload[];
  revision: number | undefined;
  refProblems?: PolicyProblem[];
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class PolicyStatusWriter {
  readonly #o: StatusWriterOptions;
  readonly #log: Logger;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  #periodic: NodeJS.Timeout | undefined;
  readonly #passes: PassScheduler;
  readonly #unsubscribe: (() => void)[] = [];
  /** What this replica last wrote, per object uid: the cache may lag behind our own writes. */
  readonly #written = new Map<string, PolicyStatus>();
  readonly #reports: ProgrammedReports | undefined;
  /** The other replicas' reports, indexed once per pass. */
  #remote = new RemoteProgrammed([]);

  constructor(o: StatusWriterOptions) {
    this.#o = o;
    this.#passes = new PassScheduler(() => this.#pass(), o.debounceMs ?? 100);
    this.#log = o.log.child({ component: 'policy-status' });
    this.#custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#core = o.kubeConfig.makeApiClient(CoreV1Api);
    if (o.programmedReports !== false) {
      this.#reports = new ProgrammedReports({
        kubeConfig: o.kubeConfig,
        namespace: o.installNamespace,
        identity: o.identity,
        leader: o.leader,
        log: o.log,
        source: {
          snapshot: () => this.localReport(),
          onChange: (fn) => {
            const offs = [o.store.subscribe(fn), o.registry.onChange(fn), o.reconciler.onChange(fn)];
            return () => offs.forEach((off) => off());
          },
        },
        onRemoteChange: () => {
          this.schedule(o.agentDebounceMs ?? 1_000);
          o.onRemoteChange?.();
        },
      });
    }
  }

  start(): void {
    const poke = (): void => this.schedule();
    // An ACK only moves "programmed on n/N nodes": a fan-out to 1,000 agents brings 1,000 of them
    // within a second, and a pass per 100 ms would recompute every policy all that time on the
    // event loop that is sending the change. Coalesce those more.
    const acked = (): void => this.schedule(this.#o.agentDebounceMs ?? 1_000);
    this.#unsubscribe.push(this.#o.store.subscribe(poke), this.#o.registry.onChange(acked), this.#o.reconciler.onChange(poke));
    this.#o.sources.accessPolicies.onChange(poke);
    this.#o.sources.meshTLSPolicies.onChange(poke);
    this.#o.leader.onChange((leader) => {
      this.#written.clear();
      if (leader) this.schedule();
    });
    this.#periodic = setInterval(poke, this.#o.periodMs ?? 30_000);
    this.#periodic.unref();
    this.#reports?.start();
    this.schedule();
  }

  async stop(): Promise<void> {
    const passes = this.#passes.stop();
    clearInterval(this.#periodic);
    for (const u of this.#unsubscribe) u();
    await passes;
    await this.#reports?.stop();
  }

  /** A pass after `delayMs` (default: the debounce), or sooner if one is already due sooner. */
  schedule(delayMs?: number): void {
    this.#passes.schedule(delayMs);
  }

  /**
   * What a policy selects in this replica's store, and the revision that carries it. Kept until
   * the store's next commit: the passes that ACKs bring (a fan-out to 1,000 agents) change only
   * which nodes acknowledged, and filtering 10,000 workloads per policy per pass was most of a
   * pass, on the event loop that sends the change.
   */
  #selection(kind: PolicyKind, key: string, workloads: readonly Workload[]): Selection {
    const { store } = this.#o;
    if (this.#selections.revision !== store.revision || this.#selections.workloads !== workloads) this.#selections = { revision: store.revision, workloads, byKey: new Map() };
    let sel = this.#selections.byKey.get(`${kind}/${key}`);
    if (!sel) {
      const inForce = store.get({ kind, key })?.value as CompiledAccessPolicy | CompiledMeshTLSPolicy | undefined;
      const selected = inForce ? workloads.filter((w) => selectedBy(inForce, w, this.#o.installNamespace)) : [];
      sel = { inForce, selected, revision: inForce ? store.revisionOf({ kind, key }) : undefined };
      this.#selections.byKey.set(`${kind}/${key}`, sel);
    }
    return sel;
  }

  #selections: { revision: number; workloads: readonly Workload[]; byKey: Map<string, Selection> } = { revision: -1, workloads: [], byKey: new Map() };

  /** The ref problems of an access policy, kept as its selection is. */
  #refProblems(key: string, sel: Selection): PolicyProblem[] {
    if (!sel.inForce) return [];
    sel.refProblems ??= accessPolicyRefProblems(sel.inForce as CompiledAccessPolicy, sel.selected, this.#o.store.values('Service'));
    return sel.refProblems;
  }

  /** The status this replica would write now (also what `/policies` on the health port shows). */
  desired(kind: PolicyKind, obj: AccessPolicy | MeshTLSPolicy): PolicyStatus {
    const { store, registry, reconciler } = this.#o;
    const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    const sel = this.#selection(kind, key, store.values('Workload'));
    const { selected, revision } = sel;
    const refProblems = kind === 'AccessPolicy' ? this.#refProblems(key, sel) : [];
    const uid = obj.metadata?.uid ?? '';
    const verdict = reconciler.verdict(kind, key);
    const remote = this.#remote;
    return computeStatus({
      generation: obj.metadata?.generation ?? 0,
      verdict,
      selected,
      refProblems,
      revision,
      epoch: store.epoch,
      agents: (node) => registry.peek(node),
      ...(remote.empty ? {} : { remote: (node: string) => remote.evidence(`${kind}/${key}`, verdict?.inForceGeneration, node) }),
      previous: this.#written.get(uid) ?? (obj.status as PolicyStatus | undefined),
      now: new Date(),
    });
  }

  /**
   * For the other replicas' leader: each policy's in-force generation and the nodes, among those
   * connected here, whose agent acknowledged a revision that carries it.
   */
  localReport(): Omit<ProgrammedReport, 'replica'> {
    const { store, registry, reconciler } = this.#o;
    const connected = registry.connectedNodes();
    const index = new Map(connected.map((node, i) => [node, i]));
    const policies: ProgrammedReport['policies'] = {};
    const workloads = store.values('Workload');
    const kinds: [PolicyKind, readonly (AccessPolicy | MeshTLSPolicy)[]][] = [
      ['AccessPolicy', this.#o.sources.accessPolicies.list()],
      ['MeshTLSPolicy', this.#o.sources.meshTLSPolicies.list()],
    ];
    for (const [kind, objs] of kinds) {
      for (const obj of objs) {
        const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
        const generation = reconciler.verdict(kind, key)?.inForceGeneration;
        const { selected, revision } = this.#selection(kind, key, workloads);
        if (generation === undefined || revision === undefined) continue;
        const nodes = new Set<number>();
        for (const w of selected) {
          const i = w.meshed ? index.get(w.node) : undefined;
          if (i === undefined || nodes.has(i)) continue;
          const agent = registry.peek(w.node);
          if (agent && agent.epoch === store.epoch && (agent.lastAckedRevision ?? -1) >= revision) nodes.add(i);
        }
        policies[`${kind}/${key}`] = { generation, nodes: [...nodes].sort((a, b) => a - b) };
      }
    }
    return { nodes: connected, policies: { ...this.#o.extraReport?.(), ...policies } };
  }

  /** The other replicas' reports (the route controller's evidence too). */
  remote(): RemoteProgrammed {
    return this.#reports?.remote() ?? this.#remote;
  }

  async #pass(): Promise<void> {
    if (!this.#o.leader.isLeader()) return;
    this.#remote = this.#reports?.remote() ?? this.#remote;
    const jobs: Promise<void>[] = [];
    const live = new Set<string>();
    for (const obj of this.#o.sources.accessPolicies.list()) {
      live.add(obj.metadata?.uid ?? '');
      jobs.push(this.#update('AccessPolicy', obj));
    }
    for (const obj of this.#o.sources.meshTLSPolicies.list()) {
      live.add(obj.metadata?.uid ?? '');
      jobs.push(this.#update('MeshTLSPolicy', obj));
    }
    // Forget what was written for policies that no longer exist.
    for (const uid of this.#written.keys()) if (!live.has(uid)) this.#written.delete(uid);
    await Promise.all(jobs);
  }

  async #update(kind: PolicyKind, obj: AccessPolicy | MeshTLSPolicy): Promise<void> {
    const uid = obj.metadata?.uid ?? '';
    const namespace = obj.metadata?.namespace ?? '';
    const name = obj.metadata?.name ?? '';
    const current = this.#written.get(uid) ?? (obj.status as PolicyStatus | undefined);
    const next = this.desired(kind, obj);
    if (sameStatus(current, next)) return;
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { group: POLICY_GROUP, version: POLICY_VERSION, namespace, plural: kind === 'AccessPolicy' ? ACCESS_POLICY_PLURAL : MESH_TLS_POLICY_PLURAL, name, body: { status: next } },
        mergePatch,
      );
      this.#written.set(uid, next);
    } catch (err) {
      // 404: deleted meanwhile. Anything else is retried by the next pass.
      if (httpStatus(err) !== 404) this.#log.warn('status write failed', { kind, policy: `${namespace}/${name}`, error: apiErrorSummary(err) });
      return;
    }
    const before = current?.conditions.find((c) => c.type === CONDITION.accepted);
    const after = next.conditions.find((c) => c.type === CONDITION.accepted);
    if (after && after.status !== 'Unknown' && (before?.status !== after.status || before.observedGeneration !== after.observedGeneration)) {
      await this.#event(kind, obj, after.status === 'True' ? 'Normal' : 'Warning', after.status === 'True' ? 'Accepted' : 'Rejected', after.message);
    }
  }

  async #event(kind: PolicyKind, obj: AccessPolicy | MeshTLSPolicy, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = new Date();
    const event: CoreV1Event = {
      metadata: { generateName: `${obj.metadata?.name ?? 'policy'}.`, namespace: obj.metadata?.namespace ?? '' },
      involvedObject: {
        apiVersion: `${POLICY_GROUP}/${POLICY_VERSION}`,
        kind,
        name: obj.metadata?.name ?? '',
        namespace: obj.metadata?.namespace ?? '',
        uid: obj.metadata?.uid ?? '',
        resourceVersion: obj.metadata?.resourceVersion ?? '',
      },
      type,
      reason,
      message: `generation ${obj.metadata?.generation ?? 0}: ${message}`,
      source: { component: 'weft-controller' },
      reportingComponent: 'weft.dev/controller',
      reportingInstance: this.#o.identity,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.#core.createNamespacedEvent({ namespace: event.metadata.namespace ?? '', body: event });
    } catch (err) {
      this.#log.warn('event write failed', { kind, policy: `${event.involvedObject.namespace}/${event.involvedObject.name}`, error: apiErrorSummary(err) });
    }
  }
}
