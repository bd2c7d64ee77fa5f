// The decision procedure over a port plan (api/policy/model.ts): any matching DENY rule denies;
// matching AUDIT rules are recorded; then, if an ALLOW policy applies, an ALLOW rule must match.
//
// A connection is decided on its attributes alone whenever no rule that could still matter needs
// the request. Otherwise (an HTTP port) the answer is `inspect`, carrying the few rules left
// undecided, and each request on the connection is decided against just those.
import type { ConnectionContext, RequestAttrs } from './attributes.ts';
import { NO_AUDITS, withAudits, type AuditRecord, type ConnectionDecision, type Decision, type RequestEvaluator } from './decision.ts';
import { connectionConditionMatches, requestConditionMatches, sourceMatches, targetRequestMatches } from './match.ts';
import type { PlannedRule, PortPlan } from './plan.ts';

export function evaluateConnectionPlan(plan: PortPlan, ctx: ConnectionContext): ConnectionDecision {
  let audits: AuditRecord[] | null = null;
  let auditPending: PlannedRule[] | null = null;
  for (const r of plan.audit) {
    if (!connectionMatches(r, ctx)) continue;
    if (r.needsRequest) (auditPending ??= []).push(r);
    else (audits ??= []).push(r.rule.audit);
  }

  let denyPending: PlannedRule[] | null = null;
  for (const r of plan.deny) {
    if (!connectionMatches(r, ctx)) continue;
    if (!r.needsRequest) return withAudits(r.rule.decision, audits);
    (denyPending ??= []).push(r);
  }

  let allowed: Decision | null = null;
  let allowPending: PlannedRule[] | null = null;
  if (plan.allowRequired) {
    for (const r of plan.allow) {
      if (!connectionMatches(r, ctx)) continue;
      if (!r.needsRequest) {
        allowed = r.rule.decision;
        break;
      }
      (allowPending ??= []).push(r);
    }
    // No ALLOW rule can match any request on this connection: no need to look at requests.
    if (allowed === null && allowPending === null) return withAudits(plan.fallback, audits);
  } else {
    allowed = plan.fallback;
  }

  if (denyPending === null && auditPending === null && allowed !== null) return withAudits(allowed, audits);
  const requests = new ConnectionRequests(plan, audits, auditPending, denyPending, allowed, allowPending);
  return { verdict: 'inspect', reason: plan.inspectReason, audits: audits ?? NO_AUDITS, requests };
}

/** The rules a connection left undecided, evaluated per request. */
class ConnectionRequests implements RequestEvaluator {
  readonly #plan: PortPlan;
  readonly #audits: readonly AuditRecord[] | null;
  readonly #auditPending: readonly PlannedRule[] | null;
  readonly #denyPending: readonly PlannedRule[] | null;
  /** Set when the connection is already allowed (by an ALLOW rule, or no ALLOW policy applies). */
  readonly #allowed: Decision | null;
  readonly #allowPending: readonly PlannedRule[] | null;

  constructor(
    plan: PortPlan,
    audits: readonly AuditRecord[] | null,
    auditPending: readonly PlannedRule[] | null,
    denyPending: readonly PlannedRule[] | null,
    allowed: Decision | null,
    allowPending: readonly PlannedRule[] | null,
  ) {
    this.#plan = plan;
    this.#audits = audits;
    this.#auditPending = auditPending;
    this.#denyPending = denyPending;
    this.#allowed = allowed;
    this.#allowPending = allowPending;
  }

  evaluate(req: RequestAttrs): Decision {
    let audits = this.#audits;
    if (this.#auditPending !== null) {
      for (const r of this.#auditPending) if (requestMatches(r, req)) audits = audits === null ? [r.rule.audit] : [...audits, r.rule.audit];
    }
    if (this.#denyPending !== null) {
      for (const r of this.#denyPending) if (requestMatches(r, req)) return withAudits(r.rule.decision, audits);
    }
    if (this.#allowed !== null) return withAudits(this.#allowed, audits);
    if (this.#allowPending !== null) {
      for (const r of this.#allowPending) if (requestMatches(r, req)) return withAudits(r.rule.decision, audits);
    }
    return withAudits(this.#plan.fallback, audits);
  }
}

/** The rule's `from` and connection conditions (its port part is settled by the plan). */
function connectionMatches(r: PlannedRule, ctx: ConnectionContext): boolean {
  const from = r.rule.from;
  if (from.length > 0) {
    let any = false;
    for (const s of from) {
      if (sourceMatches(s, ctx)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const c of r.connectionWhen) if (!connectionConditionMatches(c, ctx)) return false;
  return true;
}

/** The rule's HTTP parts, for a rule whose connection parts matched. */
function requestMatches(r: PlannedRule, req: RequestAttrs): boolean {
  if (r.requestTo !== null) {
    let any = false;
    for (const t of r.requestTo) {
      if (targetRequestMatches(t, req)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const c of r.requestWhen) if (!requestConditionMatches(c, req)) return false;
  return true;
}
