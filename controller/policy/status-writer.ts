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
import type { AccessPolicy, MeshTLSPolicy } from '../../api/policy/types.gen.ts';
import type { LeaderElector } from '../kube/leader.ts';
import type { AgentRegistry } from '../server/agent-registry.ts';
import type { RevisionedStore } from '../state/store.ts';
import type { PolicyKind, PolicyReconciler, PolicySources } from './reconciler.ts';
import { accessPolicyRefProblems, selectedBy } from './refs.ts';
import { computeStatus, sameStatus } from './status.ts';
import type { PolicyStatus } from './status.ts';

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
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class PolicyStatusWriter {
  readonly #o: StatusWriterOptions;
  readonly #log: Logger;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  #periodic: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  readonly #unsubscribe: (() => void)[] = [];
  /** What this replica last wrote, per object uid: the cache may lag behind our own writes. */
  readonly #written = new Map<string, PolicyStatus>();

  constructor(o: StatusWriterOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'policy-status' });
    this.#custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#core = o.kubeConfig.makeApiClient(CoreV1Api);
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
    this.schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#periodic);
    for (const u of this.#unsubscribe) u();
    await this.#running;
  }

  /** A pass after `delayMs` (default: the debounce), or sooner if one is already due sooner. */
  schedule(delayMs = this.#o.debounceMs ?? 100): void {
    if (this.#stopped) return;
    const due = performance.now() + delayMs;
    if (this.#timer) {
      if (due >= this.#due) return;
      clearTimeout(this.#timer);
    }
    this.#due = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) {
        this.#again = true;
        return;
      }
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
    }, delayMs);
  }

  /** The status this replica would write now (also what `/policies` on the health port shows). */
  desired(kind: PolicyKind, obj: AccessPolicy | MeshTLSPolicy): PolicyStatus {
    const { store, registry, reconciler } = this.#o;
    const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    const inForce = store.get({ kind, key })?.value as CompiledAccessPolicy | CompiledMeshTLSPolicy | undefined;
    const workloads = store.values('Workload');
    const selected = inForce ? workloads.filter((w) => selectedBy(inForce, w, this.#o.installNamespace)) : [];
    let refProblems: PolicyProblem[] = [];
    if (kind === 'AccessPolicy' && inForce) refProblems = accessPolicyRefProblems(inForce as CompiledAccessPolicy, selected, store.values('Service'));
    const uid = obj.metadata?.uid ?? '';
    return computeStatus({
      generation: obj.metadata?.generation ?? 0,
      verdict: reconciler.verdict(kind, key),
      selected,
      refProblems,
      revision: inForce ? store.revisionOf({ kind, key }) : undefined,
      epoch: store.epoch,
      agents: (node) => registry.peek(node),
      previous: this.#written.get(uid) ?? (obj.status as PolicyStatus | undefined),
      now: new Date(),
    });
  }

  async #pass(): Promise<void> {
    if (!this.#o.leader.isLeader()) return;
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
