// How many nodes have a route programmed: the nodes whose agents route for its clients, and which
// of them have acknowledged the store revision that carries this generation of it. The same test
// AccessPolicy status applies (policy/status.ts's nodeLag: this replica's agents by their ACKs, the
// others' by the replicas' programmed reports), so the two can never disagree about a node.
//
// Routes are applied by the client's node agent, so the nodes that need a route are those that
// host meshed pods it applies to: every meshed pod's node for a producer route (one in its
// Service's namespace), the nodes of its own namespace's meshed pods for a consumer route.
import type { Workload } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import { nodeLag } from '../policy/status.ts';
import type { RemoteEvidence } from '../policy/programmed-reports.ts';
import type { AgentStatus } from '../server/agent-registry.ts';

export const PROGRAMMED_CONDITION = 'weft.dev/Programmed';
const MAX_PENDING_LISTED = 10;

export interface ProgrammedInput {
  route: CompiledRoute;
  /** The store revision that carries this compiled route. */
  revision: number;
  epoch: string;
  workloads: readonly Workload[];
  agents: (node: string) => AgentStatus | undefined;
  remote?: (node: string) => RemoteEvidence;
}

export interface Programmed {
  ok: boolean;
  reason: string;
  message: string;
  programmed: number;
  total: number;
}

/** The nodes a route must reach (sorted). */
export function routeNodes(route: CompiledRoute, workloads: readonly Workload[]): string[] {
  const producer = route.parents.some((p) => p.service.slice(0, p.service.indexOf('/')) === route.namespace);
  const nodes = new Set<string>();
  for (const w of workloads) if (w.meshed && (producer || w.namespace === route.namespace)) nodes.add(w.node);
  return [...nodes].sort();
}

export function routeProgrammed(i: ProgrammedInput): Programmed {
  const required = routeNodes(i.route, i.workloads);
  const pending: string[] = [];
  for (const node of required) {
    const why = nodeLag(i.agents(node), i.epoch, i.revision, i.remote?.(node));
    if (why) pending.push(`${node} (${why})`);
  }
  const programmed = required.length - pending.length;
  const total = required.length;
  if (total === 0) return { ok: true, reason: 'Programmed', message: 'no meshed client pod it applies to: nothing to program yet (0/0 nodes)', programmed, total };
  if (pending.length === 0) return { ok: true, reason: 'Programmed', message: `in force on ${programmed}/${total} nodes that host its clients`, programmed, total };
  const more = pending.length > MAX_PENDING_LISTED ? ` and ${pending.length - MAX_PENDING_LISTED} more` : '';
  return { ok: false, reason: 'Pending', message: `in force on ${programmed}/${total} nodes that host its clients; waiting for ${pending.slice(0, MAX_PENDING_LISTED).join(', ')}${more}`, programmed, total };
}
