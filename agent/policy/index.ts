// The policy index: the one evaluator the agent's proxies and `weft policy check` share.
//
// Built from the compiled policies and the workloads and Services the agent knows, cheaply
// (O(policies + workloads): policies are grouped by namespace, nothing per workload), and rebuilt
// whenever that state changes. What each destination needs (the policies that apply to it, and per
// port the rules reduced to what still varies) is computed on first use and kept for the index's
// lifetime, so that deciding a connection is a couple of map lookups and the source checks.
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy, MtlsMode } from '../../api/policy/model.ts';
import { isMeshWide, policySelects, type ScopedPolicy } from '../../api/policy/selector.ts';
import { ConnectionContext, type ConnectionAttrs, type RequestAttrs } from './attributes.ts';
import { ALLOW_NO_POLICY, type ConnectionDecision, type Decision } from './decision.ts';
import { evaluateConnectionPlan } from './evaluate.ts';
import { compileAccessPolicyMatcher, type PolicyMatcher } from './match.ts';
import { mtlsModeOf, winningMtlsPolicy, type MtlsResolution } from './mtls.ts';
import { planPort, type PortPlan } from './plan.ts';
import { ServicePortIndex, type PortInfo } from './ports.ts';

export type { ConnectionAttrs, RequestAttrs, SourceAttrs } from './attributes.ts';
export type { AuditRecord, ConnectionDecision, Decision, InspectDecision, RequestEvaluator } from './decision.ts';
export type { MtlsResolution } from './mtls.ts';
export type { PortInfo } from './ports.ts';

export interface PolicyIndexInput {
  access: readonly CompiledAccessPolicy[];
  mtls: readonly CompiledMeshTLSPolicy[];
  workloads: readonly Workload[];
  services: readonly Service[];
  /** Where mesh-wide policies live (`weft-system`). */
  installNamespace: string;
}

/** Policies by where they can apply: mesh-wide ones, and the others by namespace. */
class Scoped<T extends ScopedPolicy> {
  readonly mesh: T[] = [];
  readonly byNamespace = new Map<string, T[]>();

  constructor(policies: readonly T[], installNamespace: string) {
    for (const p of policies) {
      if (isMeshWide(p, installNamespace)) {
        this.mesh.push(p);
      } else {
        let list = this.byNamespace.get(p.namespace);
        if (!list) this.byNamespace.set(p.namespace, (list = []));
        list.push(p);
      }
    }
  }

  /** The policies that may apply to a workload of this namespace (selectors still to check). */
  candidates(namespace: string): readonly T[] {
    const local = this.byNamespace.get(namespace);
    if (!local) return this.mesh;
    return this.mesh.length === 0 ? local : [...this.mesh, ...local];
  }
}

/** What one destination workload needs, computed on first use. */
interface DestinationEntry {
  readonly workload: Workload;
  readonly policies: readonly PolicyMatcher[];
  readonly plans: Map<number, PortPlan>;
  mtls: CompiledMeshTLSPolicy | undefined | null;
}

export class PolicyIndex {
  readonly installNamespace: string;
  readonly #access: Scoped<CompiledAccessPolicy>;
  readonly #mtls: Scoped<CompiledMeshTLSPolicy>;
  readonly #hasAccess: boolean;
  readonly #workloads: readonly Workload[];
  readonly #ports: ServicePortIndex;
  readonly #destinations = new Map<string, DestinationEntry>();
  // One context, reset per evaluation: evaluation is synchronous and never re-entered.
  readonly #ctx = new ConnectionContext();

  constructor(input: PolicyIndexInput) {
    this.installNamespace = input.installNamespace;
    this.#access = new Scoped(input.access, input.installNamespace);
    this.#mtls = new Scoped(input.mtls, input.installNamespace);
    this.#hasAccess = input.access.length > 0;
    this.#workloads = input.workloads;
    this.#ports = new ServicePortIndex(input.services);
  }

  /**
   * Decides a connection on its attributes, or answers `inspect` when the port speaks HTTP and
   * some rule that still matters needs each request.
   */
  evaluateConnection(attrs: ConnectionAttrs): ConnectionDecision {
    if (!this.#hasAccess) return ALLOW_NO_POLICY;
    const plan = this.#plan(attrs.destination, attrs.port);
    return evaluateConnectionPlan(plan, this.#ctx.reset(attrs));
  }

  /**
   * Decides one request (the CLI's question, and a convenience for callers that do not keep the
   * connection's decision). The proxy should call `requests.evaluate` of the connection's
   * `inspect` decision instead, which does not repeat the connection's checks.
   */
  evaluateRequest(attrs: ConnectionAttrs, request: RequestAttrs): Decision {
    const d = this.evaluateConnection(attrs);
    return d.verdict === 'inspect' ? d.requests.evaluate(request) : d;
  }

  /** The mTLS mode a destination port requires, and the MeshTLSPolicy that set it. */
  mtlsMode(destination: Workload, port: number, meshDefault: MtlsMode): MtlsResolution {
    const entry = this.#entry(destination);
    if (entry.mtls === null) entry.mtls = winningMtlsPolicy(this.#mtls.candidates(destination.namespace), destination, this.installNamespace);
    return mtlsModeOf(entry.mtls, port, meshDefault);
  }

  /** The names and application protocol of a destination port. */
  portInfo(destination: Workload, port: number): PortInfo {
    return this.#plan(destination, port).info;
  }

  /** Keys of the AccessPolicies that apply to a workload, sorted. */
  accessPoliciesFor(destination: Workload): string[] {
    return this.#entry(destination).policies.map((p) => p.key);
  }

  /** Whether a policy (either kind) applies to a workload. */
  selects(policy: ScopedPolicy, workload: Workload): boolean {
    return policySelects(policy, workload, this.installNamespace);
  }

  /** The meshed workloads a policy (either kind) applies to: what its status counts. */
  selectedWorkloads(policy: ScopedPolicy): Workload[] {
    return this.#workloads.filter((w) => w.meshed && policySelects(policy, w, this.installNamespace));
  }

  #entry(w: Workload): DestinationEntry {
    let e = this.#destinations.get(w.key);
    if (e === undefined || e.workload !== w) {
      const policies: PolicyMatcher[] = [];
      for (const p of this.#access.candidates(w.namespace)) if (policySelects(p, w, this.installNamespace)) policies.push(compileAccessPolicyMatcher(p));
      // By key: when several rules could decide, the one reported does not depend on the order
      // the controller happened to send the policies in.
      policies.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      e = { workload: w, policies, plans: new Map(), mtls: null };
      this.#destinations.set(w.key, e);
    }
    return e;
  }

  #plan(w: Workload, port: number): PortPlan {
    const e = this.#entry(w);
    let plan = e.plans.get(port);
    if (plan === undefined) {
      plan = planPort(e.policies, this.#ports.portInfo(w, port));
      e.plans.set(port, plan);
    }
    return plan;
  }
}
