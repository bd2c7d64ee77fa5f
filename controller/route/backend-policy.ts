// XBackendTrafficPolicy (Gateway API experimental, gateway.networking.x-k8s.io/v1alpha1) with
// Service targets → the retry budget each targeted Service's routed requests get, plus the
// policy's status per target: pure, from the policies and the Services.
//
// What Weft does with one, and where the Gateway API leaves the choice to the implementation:
// - Only `retryConstraint` is implemented. A policy that sets `sessionPersistence` is not applied
//   at all (Accepted=False, Invalid, saying so) rather than applied in part, as a route with a
//   filter Weft lacks is not.
// - A target is a Service in the policy's namespace (group "" or "core", kind Service). Targets of
//   other kinds are another implementation's: Weft writes no status for them.
// - The status ancestor is the targeted Service itself: in the mesh there is no Gateway above it,
//   and it is the Service whose clients the budget applies to.
// - Two policies on one Service: the older one (creationTimestamp, then namespace/name) wins; the
//   other is Accepted=False, Conflicted, for that Service, naming the winner.
import type { RouteRetryBudget } from '../../api/route.ts';
import type { Service } from '../../api/agent-sync.ts';
import type { Condition } from '../policy/status.ts';
import { condition, isServiceRef, parseDuration, type Verdict } from './compile.ts';

export const POLICY_GROUP = 'gateway.networking.x-k8s.io';
export const POLICY_VERSION = 'v1alpha1';
export const POLICY_PLURAL = 'xbackendtrafficpolicies';

/** The subset of an XBackendTrafficPolicy read here. */
export interface BackendPolicyObject {
  metadata?: { name?: string; namespace?: string; generation?: number; creationTimestamp?: Date | string; resourceVersion?: string };
  spec?: {
    targetRefs?: { group?: string; kind?: string; name: string }[];
    retryConstraint?: { budget?: { percent?: number; interval?: string }; minRetryRate?: { count?: number; interval?: string } };
    sessionPersistence?: unknown;
  };
  status?: { ancestors?: AncestorStatus[] };
}

export interface AncestorRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
}

export interface AncestorStatus {
  ancestorRef: AncestorRef;
  controllerName: string;
  conditions: Condition[];
}

export interface AncestorVerdict {
  ancestorRef: AncestorRef;
  accepted: Verdict;
}

export interface BackendPolicies {
  /** The budget per Service key (`<namespace>/<name>`), from the policy in force on it. */
  budgets: Map<string, RouteRetryBudget>;
  /** Per policy key (`<namespace>/<name>`): its verdict for each Service it targets. */
  verdicts: Map<string, AncestorVerdict[]>;
}

// The CRD's defaults, for a cluster whose API server did not apply them (a policy written before
// the CRD had them, or a CRD from another version).
const DEFAULT_PERCENT = 20;
const DEFAULT_INTERVAL = '10s';
const DEFAULT_MIN_COUNT = 10;
const DEFAULT_MIN_INTERVAL = '1s';
const HOUR_MS = 3_600_000;

const keyOf = (p: BackendPolicyObject) => `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`;
const createdOf = (p: BackendPolicyObject) => {
  const c = p.metadata?.creationTimestamp;
  return c instanceof Date ? c.toISOString() : (c ?? '');
};

/** The budget a policy's retryConstraint describes, or the reasons it is invalid. */
export function compileRetryConstraint(p: BackendPolicyObject): { budget?: RouteRetryBudget; problems: string[] } {
  const problems: string[] = [];
  if (p.spec?.sessionPersistence !== undefined) problems.push('spec.sessionPersistence is not implemented by Weft; the policy is not applied');
  const rc = p.spec?.retryConstraint;
  if (!rc) return { problems };
  const percent = rc.budget?.percent ?? DEFAULT_PERCENT;
  if (!Number.isInteger(percent) || percent < 0 || percent > 100) problems.push('spec.retryConstraint.budget.percent: must be an integer from 0 to 100');
  const duration = (v: string, path: string, minMs: number): number => {
    const ms = parseDuration(v);
    if (ms === undefined) problems.push(`${path}: ${JSON.stringify(v).slice(0, 40)} is not a duration`);
    else if (ms < minMs || ms > HOUR_MS) problems.push(`${path}: must be from ${minMs === 1000 ? '1s' : '1ms'} to 1h`);
    return ms ?? 0;
  };
  const intervalMs = duration(rc.budget?.interval ?? DEFAULT_INTERVAL, 'spec.retryConstraint.budget.interval', 1000);
  const minCount = rc.minRetryRate?.count ?? DEFAULT_MIN_COUNT;
  if (!Number.isInteger(minCount) || minCount < 1 || minCount > 1_000_000) problems.push('spec.retryConstraint.minRetryRate.count: must be an integer from 1 to 1000000');
  const minIntervalMs = duration(rc.minRetryRate?.interval ?? DEFAULT_MIN_INTERVAL, 'spec.retryConstraint.minRetryRate.interval', 1);
  if (problems.length > 0) return { problems };
  return { budget: { policy: keyOf(p), percent, intervalMs, minCount, minIntervalMs }, problems };
}

/** Which policy is in force on each targeted Service, and every policy's verdict per Service target. */
export function compileBackendPolicies(policies: readonly BackendPolicyObject[], service: (key: string) => Service | undefined): BackendPolicies {
  const budgets = new Map<string, RouteRetryBudget>();
  const verdicts = new Map<string, AncestorVerdict[]>();
  const winner = new Map<string, string>();
  const ordered = [...policies].sort((a, b) => createdOf(a).localeCompare(createdOf(b)) || keyOf(a).localeCompare(keyOf(b)));
  for (const p of ordered) {
    const ns = p.metadata?.namespace ?? '';
    const { budget, problems } = compileRetryConstraint(p);
    const out: AncestorVerdict[] = [];
    const seen = new Set<string>();
    for (const t of p.spec?.targetRefs ?? []) {
      if (!isServiceRef(t)) continue;
      const svcKey = `${ns}/${t.name}`;
      if (seen.has(svcKey)) continue;
      seen.add(svcKey);
      const ancestorRef: AncestorRef = { group: '', kind: 'Service', namespace: ns, name: t.name };
      let accepted = { ok: true, reason: 'Accepted', message: budget ? `retry budget in force for Service ${svcKey}` : 'no retryConstraint: the Service keeps the routes’ own retry budgets' };
      const won = winner.get(svcKey);
      if (problems.length > 0) accepted = { ok: false, reason: 'Invalid', message: problems.slice(0, 5).join('; ') };
      else if (!service(svcKey)) accepted = { ok: false, reason: 'TargetNotFound', message: `Service ${svcKey} not found` };
      else if (won !== undefined) accepted = { ok: false, reason: 'Conflicted', message: `XBackendTrafficPolicy ${won} is older and targets Service ${svcKey} too` };
      else {
        winner.set(svcKey, keyOf(p));
        if (budget) budgets.set(svcKey, budget);
      }
      out.push({ ancestorRef, accepted });
    }
    if (out.length > 0) verdicts.set(keyOf(p), out.slice(0, 16));
  }
  return { budgets, verdicts };
}

/** The status entries Weft owns, with timestamps kept where a condition did not change. */
export function ancestorStatuses(verdicts: readonly AncestorVerdict[], generation: number, controllerName: string, previous: readonly AncestorStatus[], now: Date): AncestorStatus[] {
  return verdicts.map((v) => {
    const before = previous.find((p) => p.controllerName === controllerName && sameAncestor(p.ancestorRef, v.ancestorRef));
    return { ancestorRef: v.ancestorRef, controllerName, conditions: [condition('Accepted', v.accepted, generation, before?.conditions, now)] };
  });
}

export function sameAncestor(a: AncestorRef, b: AncestorRef): boolean {
  return (a.group ?? '') === (b.group ?? '') && (a.kind ?? 'Service') === (b.kind ?? 'Service') && a.name === b.name && (a.namespace ?? '') === (b.namespace ?? '');
}
