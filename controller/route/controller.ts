// Gateway API routes with Service parents: watched, compiled (compile.ts) into the store that
// agents sync from, and given a status per Service parent under Weft's controllerName.
//
// The route CRDs are optional: their watches are not part of the controller's readiness (a
// cluster without them must still get workloads and policies), and a watch on a CRD that does not
// exist yet keeps retrying, so installing the CRDs later is enough. Level-based like the other
// reconcilers: any change of a route or a Service recompiles every route (there
// are few, and compiling one is a walk over its spec), and only real differences reach the store.
// Status is written by the leader only, and only its own entries of status.parents.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { Logger } from '../../api/log.ts';
import { apiErrorSummary } from '../../api/kube-errors.ts';
import { GATEWAY_GROUP, ROUTE_CONTROLLER_NAME, type CompiledRoute, type RouteKind } from '../../api/route.ts';
import type { LeaderElector } from '../kube/leader.ts';
import { PassScheduler } from '../kube/pass-scheduler.ts';
import { watchResource, type ResourceWatch } from '../kube/resource-watch.ts';
import { jsonEqual } from '../state/equal.ts';
import type { RevisionedStore } from '../state/store.ts';
import type { RemoteProgrammed } from '../policy/programmed-reports.ts';
import type { AgentRegistry } from '../server/agent-registry.ts';
import { ancestorStatuses, compileBackendPolicies, POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION, type AncestorStatus, type AncestorVerdict, type BackendPolicyObject } from './backend-policy.ts';
import { compileRoute, parentStatuses, type ParentStatus, type RouteObject } from './compile.ts';
import { routeNodes, routeProgrammed } from './programmed.ts';

const PLURAL: Record<RouteKind, string> = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' };
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

type RouteResource = RouteObject & KubernetesObject;
type PolicyResource = BackendPolicyObject & KubernetesObject;

export interface RouteControllerOptions {
  kubeConfig: KubeConfig;
  /** Its commits recompile routes: a parent or backend Service that appears or goes. */
  store: RevisionedStore;
  leader: LeaderElector;
  log: Logger;
  /** The agents connected here: with it, each parent's status counts the nodes that have the route programmed. */
  registry?: AgentRegistry;
  /** The other replicas' programmed reports (the policy status writer reads them; localReport() feeds ours). */
  remote?: () => RemoteProgrammed;
  /** Debounce for agents' ACKs (status only counts them). */
  agentDebounceMs?: number;
}

export class RouteController {
  readonly #o: RouteControllerOptions;
  readonly #log: Logger;
  readonly #custom: CustomObjectsApi;
  readonly watches: { HTTPRoute: ResourceWatch<RouteResource>; GRPCRoute: ResourceWatch<RouteResource>; XBackendTrafficPolicy: ResourceWatch<PolicyResource> };
  /** What was last written of each object's status entries (`parents` of a route, `ancestors` of a policy), by `<kind>/<ns>/<name>`. */
  readonly #written = new Map<string, unknown[]>();
  #unsubscribe: (() => void) | undefined;
  readonly #passes: PassScheduler;

  constructor(o: RouteControllerOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'routes' });
    this.#passes = new PassScheduler(() => this.#pass().catch((err: unknown) => this.#log.warn('route pass failed', { error: err })), 50);
    this.#custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
    const watch = <T extends KubernetesObject>(group: string, version: string, plural: string) =>
      watchResource<T>({
        kubeConfig: o.kubeConfig,
        log: this.#log,
        resource: plural,
        path: `/apis/${group}/${version}/${plural}`,
        // A CRD installed after the controller started is picked up within seconds; until then
        // the watch says once that it is absent (most clusters lack one or more of these).
        backoff: { initialMs: 1000, maxMs: 10_000 },
        optional: true,
        list: async () => (await this.#custom.listClusterCustomObject({ group, version, plural })) as KubernetesListObject<T>,
      });
    this.watches = {
      HTTPRoute: watch<RouteResource>(GATEWAY_GROUP, 'v1', PLURAL.HTTPRoute),
      GRPCRoute: watch<RouteResource>(GATEWAY_GROUP, 'v1', PLURAL.GRPCRoute),
      // Experimental channel only; most clusters do not have its CRD, and then no budget is set.
      XBackendTrafficPolicy: watch<PolicyResource>(POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL),
    };
    const poke = (): void => this.#schedule();
    for (const w of Object.values(this.watches)) w.onChange(poke);
    o.leader.onChange((leader) => {
      this.#written.clear();
      if (leader) poke();
    });
  }

  start(): void {
    const unsubscribe = [this.#o.store.subscribe(() => this.#schedule())];
    // An ACK only moves "programmed on n/N nodes": coalesce a fan-out's worth of them into one pass.
    if (this.#o.registry) unsubscribe.push(this.#o.registry.onChange(() => this.#schedule(this.#o.agentDebounceMs ?? 1_000)));
    this.#unsubscribe = () => unsubscribe.forEach((u) => u());
    for (const w of Object.values(this.watches)) w.start();
    this.#schedule();
  }

  async stop(): Promise<void> {
    const passes = this.#passes.stop();
    this.#unsubscribe?.();
    await Promise.all(Object.values(this.watches).map((w) => w.stop()));
    await passes;
  }

  /** A pass after `delayMs`, or sooner if one is already due sooner (an ACK's slow pass never delays a route change's). */
  #schedule(delayMs?: number): void {
    this.#passes.schedule(delayMs);
  }

  /** Another replica's programmed report changed: the nodes it vouches for are counted on the next pass. */
  recount(): void {
    this.#schedule(this.#o.agentDebounceMs ?? 1_000);
  }

  /**
   * For the other replicas' leader, in the policies' programmed report: each route in force here
   * (keyed `Route/<kind>/<ns>/<name>`) and the nodes, among those connected here, whose agent
   * acknowledged a revision that carries it.
   */
  localReport(): Record<string, { generation: number; nodes: number[] }> {
    const { store, registry } = this.#o;
    if (!registry) return {};
    const connected = registry.connectedNodes();
    const out: Record<string, { generation: number; nodes: number[] }> = {};
    const workloads = store.values('Workload') as Workload[];
    for (const key of store.keys('Route')) {
      const route = store.get({ kind: 'Route', key })?.value as CompiledRoute | undefined;
      const revision = store.revisionOf({ kind: 'Route', key });
      if (!route || revision === undefined) continue;
      const need = new Set(routeNodes(route, workloads));
      const nodes: number[] = [];
      connected.forEach((node, i) => {
        const agent = registry.peek(node);
        if (need.has(node) && agent && agent.epoch === store.epoch && (agent.lastAckedRevision ?? -1) >= revision) nodes.push(i);
      });
      out[`Route/${key}`] = { generation: route.generation, nodes };
    }
    return out;
  }

  async #pass(): Promise<void> {
    const { store } = this.#o;
    const service = (key: string) => store.get({ kind: 'Service', key })?.value as Service | undefined;
    const live = new Set<string>();
    const writes: Promise<void>[] = [];
    const remote = this.#o.remote?.();
    const leader = this.#o.leader.isLeader();
    const policyObjects = this.watches.XBackendTrafficPolicy.list();
    const policies = compileBackendPolicies(policyObjects, service);
    for (const policy of policyObjects) {
      const name = `${policy.metadata?.namespace ?? ''}/${policy.metadata?.name ?? ''}`;
      const key = `XBackendTrafficPolicy/${name}`;
      live.add(key);
      const verdicts = policies.verdicts.get(name);
      if (leader && verdicts) writes.push(this.#writePolicyStatus(key, policy, verdicts));
    }
    const retryBudget = (key: string) => policies.budgets.get(key);
    for (const kind of ['HTTPRoute', 'GRPCRoute'] as const) {
      for (const route of this.watches[kind].list()) {
        const r = compileRoute({ kind, route, service, retryBudget });
        const key = `${kind}/${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}`;
        live.add(key);
        if (r.compiled) {
          const before = store.get({ kind: 'Route', key });
          if (!before || !jsonEqual(before.value, r.compiled)) store.upsert({ kind: 'Route', value: r.compiled });
        } else if (store.get({ kind: 'Route', key })) store.remove({ kind: 'Route', key });
        if (leader && r.parents.length > 0) {
          const programmed = this.#programmed(key, remote);
          const parents = programmed ? r.parents.map((p) => (p.accepted.ok ? { ...p, programmed } : p)) : r.parents;
          writes.push(this.#writeStatus(kind, route, parents));
        }
      }
    }
    for (const key of store.keys('Route')) if (!live.has(key)) store.remove({ kind: 'Route', key });
    // (Route keys are `<kind>/<ns>/<name>` like the written ones, so a policy's key never matches a route's.)
    for (const key of this.#written.keys()) if (!live.has(key)) this.#written.delete(key);
    await Promise.all(writes);
  }

  #programmed(key: string, remote: RemoteProgrammed | undefined): { ok: boolean; reason: string; message: string } | undefined {
    const { store, registry } = this.#o;
    if (!registry) return undefined;
    const route = store.get({ kind: 'Route', key })?.value as CompiledRoute | undefined;
    const revision = store.revisionOf({ kind: 'Route', key });
    if (!route || revision === undefined) return undefined;
    const p = routeProgrammed({
      route,
      revision,
      epoch: store.epoch,
      workloads: store.values('Workload'),
      agents: (node) => registry.peek(node),
      ...(remote && !remote.empty ? { remote: (node: string) => remote.evidence(`Route/${key}`, route.generation, node) } : {}),
    });
    return { ok: p.ok, reason: p.reason, message: p.message };
  }

  async #writeStatus(kind: RouteKind, route: RouteResource, verdicts: Parameters<typeof parentStatuses>[0]): Promise<void> {
    const key = `${kind}/${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}`;
    const all = route.status?.parents ?? [];
    const mine = (this.#written.get(key) as ParentStatus[] | undefined) ?? all.filter((p) => p.controllerName === ROUTE_CONTROLLER_NAME);
    const next = parentStatuses(verdicts, route.metadata?.generation ?? 0, ROUTE_CONTROLLER_NAME, mine, new Date());
    await this.#writeOwned({ key, group: GATEWAY_GROUP, version: 'v1', plural: PLURAL[kind], object: route, field: 'parents', all, mine, next });
  }

  async #writePolicyStatus(key: string, policy: PolicyResource, verdicts: AncestorVerdict[]): Promise<void> {
    const all = policy.status?.ancestors ?? [];
    const mine = (this.#written.get(key) as AncestorStatus[] | undefined) ?? all.filter((a) => a.controllerName === ROUTE_CONTROLLER_NAME);
    const next = ancestorStatuses(verdicts, policy.metadata?.generation ?? 0, ROUTE_CONTROLLER_NAME, mine, new Date());
    await this.#writeOwned({ key, group: POLICY_GROUP, version: POLICY_VERSION, plural: POLICY_PLURAL, object: policy, field: 'ancestors', all, mine, next });
  }

  /**
   * Writes Weft's entries of a status list (`status.parents` of a route, `status.ancestors` of a
   * policy) if they changed. The list is shared by every implementation: the others' entries are
   * kept, and the resourceVersion refuses the write if someone changed it meanwhile (the next pass
   * retries).
   */
  async #writeOwned<T extends { controllerName: string }>(o: { key: string; group: string; version: string; plural: string; object: KubernetesObject; field: 'parents' | 'ancestors'; all: T[]; mine: T[]; next: T[] }): Promise<void> {
    if (jsonEqual(o.mine, o.next)) return;
    const others = o.all.filter((p) => p.controllerName !== ROUTE_CONTROLLER_NAME);
    const meta = o.object.metadata;
    try {
      await this.#custom.patchNamespacedCustomObjectStatus(
        {
          group: o.group,
          version: o.version,
          namespace: meta?.namespace ?? '',
          plural: o.plural,
          name: meta?.name ?? '',
          body: { metadata: { resourceVersion: meta?.resourceVersion }, status: { [o.field]: [...others, ...o.next] } },
        },
        mergePatch,
      );
      this.#written.set(o.key, o.next);
    } catch (err) {
      this.#log.warn('status write failed', { object: o.key, error: apiErrorSummary(err) });
      setTimeout(() => this.#schedule(), 1000).unref();
    }
  }
}
