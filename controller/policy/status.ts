// The status of one Weft policy, computed from what the controller knows: the verdict on its spec,
// the workloads it selects, and which nodes' agents have acknowledged the revision that carries
// it. Pure: the writer (status-writer.ts) feeds it and decides whether anything changed.
//
// Conditions (Gateway API style, each with the generation it describes):
//   Accepted      the spec is valid (else: every problem, with its path)
//   ResolvedRefs  what the spec names exists and fits (port names, HTTP-only rules on HTTP ports)
//   Programmed    every node that hosts a selected workload enforces this generation
import type { Workload } from '../../api/agent-sync.ts';
import { CONDITION } from '../../api/policy/model.ts';
import type { PolicyProblem } from '../../api/policy/model.ts';
import type { AgentStatus } from '../server/agent-registry.ts';
import type { RemoteEvidence } from './programmed-reports.ts';
import { jsonEqual } from '../state/equal.ts';
import type { PolicyVerdict } from './reconciler.ts';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

export interface PolicyStatus {
  observedGeneration: number;
  conditions: Condition[];
  selectedWorkloads: number;
  unmeshedWorkloads: number;
  nodes: { programmed: number; total: number; pending: string[] };
  programmedNodes: string;
  /** The generation in force and its spec, so that a restarted controller enforces it too (reconciler.ts). */
  lastAccepted?: { generation: number; spec: Record<string, unknown> };
}

export interface StatusInput {
  generation: number;
  verdict: PolicyVerdict | undefined;
  /** Pods the policy's scope and selector pick (meshed or not). */
  selected: Workload[];
  /** Problems with what the spec refers to (from refs.ts). */
  refProblems: PolicyProblem[];
  /** The store revision that carries the policy in force, if any, and the store's epoch. */
  revision: number | undefined;
  epoch: string;
  agents: (node: string) => AgentStatus | undefined;
  /** What the other controller replicas report about this policy on `node` (programmed-reports.ts). */
  remote?: (node: string) => RemoteEvidence;
  previous: PolicyStatus | undefined;
  now: Date;
}

// A message a person reads in `kubectl describe`; the API server caps it at 32 KiB.
const MAX_MESSAGE = 2048;
const MAX_PENDING_LISTED = 10;

// What computeStatus derives from a selection alone. The writer passes the same array until the
// store changes, and a fan-out to 1,000 agents brings a pass per second of ACKs.
const scopes = new WeakMap<readonly Workload[], { meshed: number; required: string[] }>();

function scopeOf(selected: readonly Workload[]): { meshed: number; required: string[] } {
  let s = scopes.get(selected);
  if (!s) {
    const meshed = selected.filter((w) => w.meshed);
    s = { meshed: meshed.length, required: [...new Set(meshed.map((w) => w.node))].sort() };
    scopes.set(selected, s);
  }
  return s;
}

export function computeStatus(i: StatusInput): PolicyStatus {
  const { meshed: meshedCount, required } = scopeOf(i.selected);
  const pending: { node: string; why: string }[] = [];
  if (i.revision !== undefined) {
    for (const node of required) {
      const why = nodeLag(i.agents(node), i.epoch, i.revision, i.remote?.(node));
      if (why) pending.push({ node, why });
    }
  }
  const inForce = i.verdict?.inForceGeneration;
  const programmedCount = i.revision === undefined ? 0 : required.length - pending.length;

  const conditions: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>[] = [];
  const v = i.verdict;
  if (!v) {
    conditions.push({ type: CONDITION.accepted, status: 'Unknown', reason: 'Pending', message: 'the controller has not processed this generation yet' });
  } else if (v.accepted) {
    const note = v.warnings.length > 0 ? `the spec is valid, with warnings: ${problemsText(v.warnings)}` : 'the spec is valid';
    conditions.push({ type: CONDITION.accepted, status: 'True', reason: 'Accepted', message: clip(note) });
  } else {
    const kept = inForce !== undefined ? ` Generation ${inForce} remains in force.` : ' Nothing from this policy is enforced.';
    conditions.push({ type: CONDITION.accepted, status: 'False', reason: 'Invalid', message: clip(`${problemsText(v.problems)}.${kept}`) });
  }

  if (i.refProblems.length === 0) {
    conditions.push({ type: CONDITION.resolvedRefs, status: 'True', reason: 'ResolvedRefs', message: 'every port it names exists, and its HTTP rules are on HTTP ports' });
  } else {
    const reason = i.refProblems.some((p) => p.message.includes('not an HTTP port')) ? 'NotHTTPPort' : 'UnresolvedRefs';
    conditions.push({ type: CONDITION.resolvedRefs, status: 'False', reason, message: clip(problemsText(i.refProblems)) });
  }

  if (!v) {
    conditions.push({ type: CONDITION.programmed, status: 'Unknown', reason: 'Pending', message: 'waiting for the controller' });
  } else if (!v.accepted) {
    const message = inForce !== undefined ? `this generation is not enforced; generation ${inForce} is, on ${programmedCount}/${required.length} nodes` : 'not enforced: the spec is invalid';
    conditions.push({ type: CONDITION.programmed, status: 'False', reason: 'Invalid', message });
  } else if (pending.length > 0) {
    const list = pending.slice(0, MAX_PENDING_LISTED).map((p) => `${p.node} (${p.why})`);
    const more = pending.length > MAX_PENDING_LISTED ? ` and ${pending.length - MAX_PENDING_LISTED} more` : '';
    conditions.push({ type: CONDITION.programmed, status: 'False', reason: 'Pending', message: clip(`in force on ${programmedCount}/${required.length} nodes; waiting for ${list.join(', ')}${more}`) });
  } else {
    const message =
      required.length === 0 ? 'selects no meshed workload: nothing to enforce yet' : `in force on all ${required.length} node${required.length === 1 ? '' : 's'} that host its ${meshedCount} workload${meshedCount === 1 ? '' : 's'}`;
    conditions.push({ type: CONDITION.programmed, status: 'True', reason: 'Programmed', message });
  }

  return {
    observedGeneration: i.generation,
    conditions: conditions.map((c) => {
      const before = i.previous?.conditions.find((p) => p.type === c.type);
      // The transition time moves only when the status does (API conventions).
      const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : i.now.toISOString();
      return { ...c, observedGeneration: i.generation, lastTransitionTime };
    }),
    selectedWorkloads: meshedCount,
    unmeshedWorkloads: i.selected.length - meshedCount,
    nodes: { programmed: programmedCount, total: required.length, pending: pending.map((p) => p.node).slice(0, MAX_PENDING_LISTED) },
    programmedNodes: `${programmedCount}/${required.length}`,
    ...lastAccepted(i),
  };
}

function lastAccepted(i: StatusInput): Pick<PolicyStatus, 'lastAccepted'> {
  const v = i.verdict;
  if (v?.inForceGeneration !== undefined && v.inForceSpec) return { lastAccepted: { generation: v.inForceGeneration, spec: v.inForceSpec } };
  // Not processed yet: what the object carries stays until the controller has a verdict.
  if (!v && i.previous?.lastAccepted) return { lastAccepted: i.previous.lastAccepted };
  return {};
}

/** Why a node's agent does not hold `revision` yet, or '' when it does (here or, per its report, on another replica). */
export function nodeLag(agent: AgentStatus | undefined, epoch: string, revision: number, remote: RemoteEvidence): string {
  if (agent && agent.epoch === epoch && (agent.lastAckedRevision ?? -1) >= revision) return '';
  if (remote?.held) return '';
  if (remote && (!agent || agent.streams === 0)) return `its agent, connected to replica ${remote.replica}, has not acknowledged it yet`;
  if (!agent) return 'its agent never connected to this controller';
  if (agent.lastNack && agent.lastNack.epoch === epoch && agent.lastNack.revision >= revision) return `its agent refused the update: ${agent.lastNack.reason}`;
  if (agent.streams === 0) return `its agent is disconnected${agent.disconnectedAt ? ` since ${agent.disconnectedAt}` : ''}`;
  return 'its agent has not acknowledged the update yet';
}

function problemsText(ps: PolicyProblem[]): string {
  return ps.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; ');
}

function clip(s: string): string {
  return s.length <= MAX_MESSAGE ? s : `${s.slice(0, MAX_MESSAGE - 1)}…`;
}

/** Equal apart from transition times: nothing worth a write. */
export function sameStatus(a: PolicyStatus | undefined, b: PolicyStatus): boolean {
  if (!a) return false;
  const strip = (s: PolicyStatus) => ({ ...s, conditions: s.conditions.map((c) => ({ ...c, lastTransitionTime: '' })) });
  return jsonEqual(strip(a), strip(b));
}
