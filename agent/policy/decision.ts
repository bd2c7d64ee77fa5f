// What the evaluator answers. Decisions are immutable and mostly shared: the decision a rule makes
// is built once, when the rule is planned for a destination port, so that deciding allocates
// nothing unless AUDIT rules matched (their records are per decision).
import type { RequestAttrs } from './attributes.ts';

/** An AUDIT rule that matched: recorded in access logs and metrics, never changes the verdict. */
export interface AuditRecord {
  /** `<namespace>/<name>` of the AccessPolicy. */
  readonly policy: string;
  /** The rule's name. */
  readonly rule: string;
}

export interface Decision {
  readonly verdict: 'allow' | 'deny';
  /** The policy that decided; absent for the default allow and the implicit deny. */
  readonly policy?: string;
  /** The rule that decided; absent for the default allow and the implicit deny. */
  readonly rule?: string;
  /** A short sentence for logs and `weft policy check`. */
  readonly reason: string;
  readonly audits: readonly AuditRecord[];
}

/** Evaluates the requests of one connection that got an `inspect` verdict. */
export interface RequestEvaluator {
  evaluate(request: RequestAttrs): Decision;
}

/**
 * The port speaks HTTP and the verdict depends on each request: the L7 proxy must parse the
 * requests and ask `requests.evaluate` for each one.
 */
export interface InspectDecision {
  readonly verdict: 'inspect';
  readonly reason: string;
  /** AUDIT rules that already matched on the connection's attributes alone. */
  readonly audits: readonly AuditRecord[];
  readonly requests: RequestEvaluator;
}

export type ConnectionDecision = Decision | InspectDecision;

export const NO_AUDITS: readonly AuditRecord[] = Object.freeze([]);

export function decision(verdict: 'allow' | 'deny', reason: string, policy?: string, rule?: string): Decision {
  const d: Decision = policy === undefined ? { verdict, reason, audits: NO_AUDITS } : { verdict, policy, rule, reason, audits: NO_AUDITS };
  return Object.freeze(d);
}

/** The shared decision, or a copy carrying the audit records when there are any. */
export function withAudits(d: Decision, audits: readonly AuditRecord[] | null): Decision {
  return audits === null || audits.length === 0 ? d : { ...d, audits };
}

export const ALLOW_NO_POLICY: Decision = decision('allow', 'allowed: no policy applies');
