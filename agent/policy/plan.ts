// A destination port's plan: the rules of the policies that apply to one workload, reduced to what
// can still vary per connection and per request on one of its ports. Everything that depends only
// on the destination and port (port lists, `destination.port` conditions, whether the port speaks
// HTTP) is decided here once, so that a connection evaluates only its source and a request only
// its HTTP attributes.
//
// On a port that does not speak HTTP, a rule with L7 parts fails closed: in an ALLOW policy it
// never matches (it is left out of the plan); in a DENY or AUDIT policy its L7 parts count as
// matching, so its L4 parts alone decide.
import { ALLOW_NO_POLICY, decision, type Decision } from './decision.ts';
import { portConditionMatches, targetPortMatches, type ConditionMatcher, type PolicyMatcher, type RuleMatcher, type TargetMatcher } from './match.ts';
import type { PortInfo } from './ports.ts';

export interface PlannedRule {
  readonly rule: RuleMatcher;
  /** Conditions on the connection's addresses and identity. */
  readonly connectionWhen: readonly ConditionMatcher[];
  /** null when `to` already matches on the port; else the entries whose HTTP fields must match. */
  readonly requestTo: readonly TargetMatcher[] | null;
  /** `request.*` conditions. */
  readonly requestWhen: readonly ConditionMatcher[];
  /** The rule cannot be decided without the request. */
  readonly needsRequest: boolean;
}

export interface PortPlan {
  readonly info: PortInfo;
  readonly deny: readonly PlannedRule[];
  readonly audit: readonly PlannedRule[];
  readonly allow: readonly PlannedRule[];
  /** Some ALLOW policy applies: a connection or request no ALLOW rule matches is denied. */
  readonly allowRequired: boolean;
  /** The verdict when no DENY rule matched and no ALLOW policy is required (or none matched). */
  readonly fallback: Decision;
  readonly inspectReason: string;
}

export function planPort(policies: readonly PolicyMatcher[], info: PortInfo): PortPlan {
  const deny: PlannedRule[] = [];
  const audit: PlannedRule[] = [];
  const allow: PlannedRule[] = [];
  const allowPolicies: string[] = [];
  const inspecting = new Set<string>();
  for (const p of policies) {
    if (p.action === 'ALLOW') allowPolicies.push(p.key);
    const into = p.action === 'DENY' ? deny : p.action === 'AUDIT' ? audit : allow;
    for (const r of p.rules) {
      const planned = planRule(r, info);
      if (!planned) continue;
      into.push(planned);
      if (planned.needsRequest) inspecting.add(p.key);
    }
  }
  const allowRequired = allowPolicies.length > 0;
  const fallback = allowRequired
    ? decision('deny', `no ALLOW rule matched (policies: ${allowPolicies.join(', ')})`)
    : policies.length === 0
      ? ALLOW_NO_POLICY
      : decision('allow', 'allowed: no DENY rule matched and no ALLOW policy applies');
  return {
    info,
    deny,
    audit,
    allow,
    allowRequired,
    fallback,
    inspectReason: `port ${info.port} speaks ${info.appProtocol}: rules of ${[...inspecting].join(', ')} need each request`,
  };
}

/** The rule reduced to this port, or undefined when it can never match there. */
function planRule(rule: RuleMatcher, info: PortInfo): PlannedRule | undefined {
  const failClosed = !info.http && rule.policy.action === 'ALLOW';
  if (failClosed && rule.l7) return undefined;

  const connectionWhen: ConditionMatcher[] = [];
  const requestWhen: ConditionMatcher[] = [];
  for (const c of rule.when) {
    if (c.subject === 'destination.port') {
      if (!portConditionMatches(c, info.port)) return undefined;
    } else if (!c.l7) {
      connectionWhen.push(c);
    } else if (info.http) {
      requestWhen.push(c);
    }
    // An L7 condition on a non-HTTP port of a DENY/AUDIT rule counts as matching: dropped.
  }

  let requestTo: TargetMatcher[] | null = null;
  if (rule.to.length > 0) {
    let matchesOnPort = false;
    const candidates: TargetMatcher[] = [];
    for (const t of rule.to) {
      if (!targetPortMatches(t, info.port, info.names)) continue;
      if (!t.l7 || !info.http) {
        // No HTTP fields, or (DENY/AUDIT on a non-HTTP port) HTTP fields that count as matching.
        matchesOnPort = true;
        break;
      }
      candidates.push(t);
    }
    if (!matchesOnPort) {
      if (candidates.length === 0) return undefined;
      requestTo = candidates;
    }
  }
  return { rule, connectionWhen, requestTo, requestWhen, needsRequest: requestTo !== null || requestWhen.length > 0 };
}
