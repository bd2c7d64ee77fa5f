// Policy enforcement for the agent's inbound paths: one place that asks the evaluator
// (agent/policy/), counts decisions, and keeps every open inbound connection answerable to the
// policies in force.
//
// When the state changes (a policy, a workload's labels, a Service's ports), every open connection
// is evaluated again with the destination as it is now, and those now denied are reset — a policy
// that denies a client takes effect on its open connections too, not only on the next one. A
// connection spliced at L4 whose port now needs request-level inspection is reset as well: its
// requests cannot be checked on a byte stream, and the client's reconnect lands on the L7 path.
import type { MtlsMode } from '../../api/policy/model.ts';
import { policyDecisions, policyRevoked } from '../metrics.ts';
import type { ConnectionAttrs, RequestAttrs } from '../policy/attributes.ts';
import type { ConnectionDecision, Decision } from '../policy/decision.ts';
import { PolicyIndex } from '../policy/index.ts';
import type { StateStore } from '../state/store.ts';
import { type OpenedInfo, workloadName } from './report.ts';

export interface TrackedConnection {
  attrs: ConnectionAttrs;
  /** True when requests are inspected (an L7 session), false for a byte splice. */
  inspected: boolean;
  /** Resets the connection; `reason` goes to its access line. */
  close(reason: string): void;
}

export interface EnforcerOptions {
  store: StateStore;
  /** The install namespace: AccessPolicies there are mesh-wide. */
  installNamespace: string;
  log: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

export class PolicyEnforcer {
  readonly #o: EnforcerOptions;
  #index: PolicyIndex | undefined;
  readonly #open = new Set<TrackedConnection>();

  constructor(o: EnforcerOptions) {
    this.#o = o;
    o.store.onChange(() => {
      this.#index = undefined;
      this.#revalidate();
    });
  }

  /** The evaluator over the current state, rebuilt lazily after each change. */
  get index(): PolicyIndex {
    const { store } = this.#o;
    this.#index ??= new PolicyIndex({
      access: store.accessPolicies(),
      mtls: store.mtlsPolicies(),
      workloads: store.workloads(),
      services: store.services(),
      installNamespace: this.#o.installNamespace,
    });
    return this.#index;
  }

  /** Decides a new connection, and counts the decision (audits and denials by `source`). */
  connection(attrs: ConnectionAttrs, source?: SourceInfo): ConnectionDecision {
    const d = this.index.evaluateConnection(attrs);
    count(d, 'l4', source);
    return d;
  }

  /** Decides one request of an inspected connection, and counts the decision (audits and denials by `source`). */
  request(inspect: Extract<ConnectionDecision, { verdict: 'inspect' }>, req: RequestAttrs, source?: SourceInfo): Decision {
    const d = inspect.requests.evaluate(req);
    count(d, 'l7', source);
    return d;
  }

  mtlsMode(attrs: Pick<ConnectionAttrs, 'destination' | 'port'>): { mode: MtlsMode; policy?: string } {
    return this.index.mtlsMode(attrs.destination, attrs.port, this.#o.store.config.mtlsMode);
  }

  /** Keeps an accepted connection under watch until the returned function is called. */
  track(c: TrackedConnection): () => void {
    this.#open.add(c);
    return () => this.#open.delete(c);
  }

  get openCount(): number {
    return this.#open.size;
  }

  #revalidate(): void {
    if (this.#open.size === 0) return;
    const { store } = this.#o;
    for (const c of [...this.#open]) {
      // The destination as it is now: relabelling a pod changes which policies select it.
      const destination = store.workload(c.attrs.destination.key);
      if (!destination) continue; // the pod is gone; its connections end with it
      c.attrs = { ...c.attrs, destination };
      const d = this.index.evaluateConnection(c.attrs);
      let why: string | undefined;
      if (d.verdict === 'deny') why = `closed by a policy change: ${d.reason}`;
      else if (d.verdict === 'inspect' && !c.inspected) why = 'closed by a policy change: the port now needs request-level inspection';
      if (!why) continue;
      this.#open.delete(c);
      policyRevoked.inc({ policy: (d.verdict === 'deny' && d.policy) || 'none', rule: (d.verdict === 'deny' && d.rule) || '' });
      this.#o.log('info', 'connection closed by policy change', { destination: destination.key, port: c.attrs.port, source: c.attrs.source.principal ?? c.attrs.source.ip, reason: why });
      c.close(why);
    }
  }
}

/** Who a decision was about, as the audit and deny counts name it: a workload, never a pod or an address. */
export interface DecisionSource {
  workload: string;
  namespace: string;
}

const UNKNOWN_SOURCE: DecisionSource = { workload: 'unknown', namespace: 'unknown' };

/** The source of a connection as the decision counts name it; `unknown` for what is outside the mesh. */
export function decisionSource(info: SourceInfo): DecisionSource {
  if (info.source) return { workload: workloadName(info.source), namespace: info.source.namespace };
  const ns = info.sourcePrincipal ? namespaceOfPrincipal(info.sourcePrincipal) : undefined;
  return ns ? { workload: 'unknown', namespace: ns } : UNKNOWN_SOURCE;
}

/** Who connects, as an access line knows it. */
export type SourceInfo = Pick<OpenedInfo, 'source' | 'sourcePrincipal'>;

const NO_SOURCE: DecisionSource = { workload: '', namespace: '' };

function count(d: ConnectionDecision | Decision, layer: 'l4' | 'l7', from: SourceInfo | undefined): void {
  // Named only for audits and denials (metrics.ts: bounded series), so allows cost no lookup.
  const source = d.audits.length > 0 || d.verdict === 'deny' ? (from ? decisionSource(from) : UNKNOWN_SOURCE) : NO_SOURCE;
  for (const a of d.audits) policyDecisions.inc({ policy: a.policy, rule: a.rule, decision: 'audit', layer, source_workload: source.workload, source_workload_namespace: source.namespace });
  if (d.verdict === 'inspect') return;
  const who = d.verdict === 'deny' ? source : NO_SOURCE;
  policyDecisions.inc({ policy: d.policy ?? 'none', rule: d.rule ?? '', decision: d.verdict, layer, source_workload: who.workload, source_workload_namespace: who.namespace });
}

/** The namespace in a SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>`, if it has that shape. */
export function namespaceOfPrincipal(principal: string): string | undefined {
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(principal);
  return m?.[1];
}

/** The policy fields of an access line: who decided, and which AUDIT rules matched. */
export function decidedBy(d: { policy?: string | undefined; rule?: string | undefined; audits: readonly { policy: string; rule: string }[] }): {
  policy?: string;
  rule?: string;
  audits?: string[];
} {
  return {
    ...(d.policy ? { policy: d.policy, rule: d.rule ?? '' } : {}),
    ...(d.audits.length > 0 ? { audits: d.audits.map((a) => `${a.policy}:${a.rule}`) } : {}),
  };
}
