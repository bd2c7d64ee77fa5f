// Which nodes need which policy: the part of the store that makes agent state per node.
//
// A policy is enforced by the agent of the destination's node (DESIGN.md), so a node needs a
// policy exactly when the policy selects a meshed workload scheduled there. Mesh-wide and
// namespace-wide policies are no exception: they reach the nodes that run a workload they select.
// Workloads and services are not scoped: any pod may dial any pod or Service address, and the
// client's agent needs the destination's identity, node and meshed flag to tunnel (or to know it
// must not), so they stay mesh-wide (docs/agent-sync.md says why and what it costs).
//
// Per policy, the count of selected meshed workloads on each node: a node needs the policy while
// its count is above 0, so a workload change costs one selector check per policy, and a policy
// change one pass over the workloads. The node set after each revision that changed it is kept
// for as long as the store's change log reaches back, so that a delta from any base the log
// covers knows what the agent held at that base: a policy that left a node's set is a remove for
// that node, one that entered it an upsert, and the rest of the fleet hears nothing.
import type { Resource, Workload } from '../../api/agent-sync.ts';
import type { CompiledAccessPolicy, CompiledMeshTLSPolicy } from '../../api/policy/model.ts';
import { policySelects } from '../../api/policy/selector.ts';

type Policy = CompiledAccessPolicy | CompiledMeshTLSPolicy;
export type PolicyRefKey = string;

/** One committed change, as the store saw it: the value before and after (undefined: absent). */
export interface Change {
  key: string;
  before: Resource | undefined;
  after: Resource | undefined;
}

interface Entry {
  revision: number;
  nodes: ReadonlySet<string>;
}

const NONE: ReadonlySet<string> = new Set();

export function isPolicy(r: Resource | undefined): r is Extract<Resource, { kind: 'AccessPolicy' | 'MeshTLSPolicy' }> {
  return r?.kind === 'AccessPolicy' || r?.kind === 'MeshTLSPolicy';
}

export class NodeScope {
  readonly #installNamespace: string;
  readonly #counts = new Map<PolicyRefKey, Map<string, number>>();
  readonly #policies = new Map<PolicyRefKey, Policy>();
  // Oldest first; the last entry is the node set now.
  readonly #history = new Map<PolicyRefKey, Entry[]>();

  constructor(installNamespace: string) {
    this.#installNamespace = installNamespace;
  }

  /**
   * Takes one revision's changes (the store already holds the new values) and returns the
   * policies whose node set changed, so that the revision's log entry names them even when their
   * value did not change.
   */
  commit(revision: number, changes: readonly Change[], workloads: () => Iterable<Workload>): PolicyRefKey[] {
    const dirty = new Set<PolicyRefKey>();
    const recounted = new Set<PolicyRefKey>();
    for (const c of changes) {
      if (!isPolicy(c.before) && !isPolicy(c.after)) continue;
      recounted.add(c.key);
      dirty.add(c.key);
      if (isPolicy(c.after)) this.#policies.set(c.key, c.after.value);
      else this.#policies.delete(c.key);
      this.#counts.delete(c.key);
    }
    if (recounted.size > 0) {
      for (const w of workloads()) {
        for (const key of recounted) {
          const p = this.#policies.get(key);
          if (p && this.#selects(p, w)) this.#bump(key, w.node, 1);
        }
      }
    }
    for (const c of changes) {
      const before = c.before?.kind === 'Workload' ? c.before.value : undefined;
      const after = c.after?.kind === 'Workload' ? c.after.value : undefined;
      if (!before && !after) continue;
      for (const [key, p] of this.#policies) {
        if (recounted.has(key)) continue;
        if (before && this.#selects(p, before) && this.#bump(key, before.node, -1)) dirty.add(key);
        if (after && this.#selects(p, after) && this.#bump(key, after.node, 1)) dirty.add(key);
      }
    }
    const moved: PolicyRefKey[] = [];
    for (const key of dirty) {
      const now = new Set(this.#counts.get(key)?.keys() ?? []);
      const history = this.#history.get(key);
      const last = history?.[history.length - 1]?.nodes ?? NONE;
      if (sameSet(now, last)) continue;
      if (history) history.push({ revision, nodes: now });
      else this.#history.set(key, [{ revision, nodes: now }]);
      moved.push(key);
    }
    return moved;
  }

  /** The nodes that need the policy now. */
  nodesNow(key: PolicyRefKey): ReadonlySet<string> {
    const history = this.#history.get(key);
    return history?.[history.length - 1]?.nodes ?? NONE;
  }

  /** The nodes that needed the policy at `revision` (which must not be below the last prune's floor). */
  nodesAt(key: PolicyRefKey, revision: number): ReadonlySet<string> {
    const history = this.#history.get(key);
    if (!history) return NONE;
    for (let i = history.length - 1; i >= 0; i--) {
      const e = history[i] as Entry;
      if (e.revision <= revision) return e.nodes;
    }
    return NONE;
  }

  /** The policies `node` needs now (keys). */
  policiesFor(node: string): PolicyRefKey[] {
    const out: PolicyRefKey[] = [];
    for (const [key, history] of this.#history) if (history[history.length - 1]?.nodes.has(node)) out.push(key);
    return out;
  }

  /** Forgets node sets no delta from `floor` or later can ask about. */
  prune(floor: number): void {
    for (const [key, history] of this.#history) {
      // Keep the newest entry at or below the floor: it is the set at the floor.
      let keepFrom = 0;
      for (let i = history.length - 1; i >= 0; i--) {
        if ((history[i] as Entry).revision <= floor) {
          keepFrom = i;
          break;
        }
      }
      if (keepFrom > 0) history.splice(0, keepFrom);
      const only = history[0];
      if (history.length === 1 && only && only.nodes.size === 0 && only.revision <= floor && !this.#policies.has(key)) this.#history.delete(key);
    }
  }

  #selects(p: Policy, w: Workload): boolean {
    return w.meshed && policySelects(p, w, this.#installNamespace);
  }

  /** Returns true when the node entered or left the policy's set. */
  #bump(key: PolicyRefKey, node: string, by: 1 | -1): boolean {
    let counts = this.#counts.get(key);
    if (!counts) {
      counts = new Map();
      this.#counts.set(key, counts);
    }
    const n = (counts.get(node) ?? 0) + by;
    if (n <= 0) counts.delete(node);
    else counts.set(node, n);
    return by === 1 ? n === 1 : n <= 0;
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
