// Reading a Gateway API route as the routing suites check it: its status as the API server has it,
// Weft's conditions once they describe the route's generation, the routes a node's agent holds,
// and when an AccessPolicy the suites add is in force.
import { sh, type Result } from './playground.ts';

export interface RouteStatus {
  metadata: { generation: number };
  status?: { parents?: { controllerName: string; parentRef: { name: string }; conditions: { type: string; status: string; reason: string; message: string; observedGeneration: number }[] }[] };
}

export type Conditions = Record<string, { status: string; reason: string; message: string }>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function routeReader(o: { kind: 'httproute' | 'grpcroute'; kubectl: (args: string[]) => Promise<Result>; playground: string; node?: string }) {
  const routeStatus = async (ns: string, name: string): Promise<RouteStatus> => {
    const r = await o.kubectl(['-n', ns, 'get', o.kind, name, '-o', 'json']);
    if (r.code !== 0) throw new Error(`get ${o.kind}: ${r.stderr}`);
    return JSON.parse(r.stdout) as RouteStatus;
  };
  /** Waits until Weft's status entry for the route's first parent describes its generation; returns the conditions. */
  const settled = async (ns: string, name: string, timeoutMs = 30_000): Promise<Conditions> => {
    const until = Date.now() + timeoutMs;
    let last: RouteStatus | undefined;
    while (Date.now() < until) {
      last = await routeStatus(ns, name);
      const mine = last.status?.parents?.find((p) => p.controllerName === 'weft.dev/mesh-controller');
      if (mine && mine.conditions.every((c) => c.observedGeneration === last?.metadata.generation)) return Object.fromEntries(mine.conditions.map((c) => [c.type, c]));
      await sleep(200);
    }
    throw new Error(`${o.kind} ${ns}/${name} status never settled: ${JSON.stringify(last?.status)}`);
  };
  /** The route keys a node's agent (node-2 by default: the clients' node) holds, with their generations. */
  const agentRoutes = async (): Promise<Record<string, number>> => {
    const r = await sh('ip', ['netns', 'exec', `wpg-${o.playground}-${o.node ?? 'node-2'}`, 'curl', '-s', 'http://127.0.0.1:15000/routes']);
    try {
      return Object.fromEntries((JSON.parse(r.stdout) as { key: string; generation: number }[]).map((x) => [x.key, x.generation]));
    } catch {
      return {};
    }
  };
  /** Waits until an AccessPolicy reports Programmed (in force on the nodes it selects). */
  const policyProgrammed = async (ns: string, name: string, timeoutMs = 30_000): Promise<void> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const r = await o.kubectl(['-n', ns, 'get', 'accesspolicy', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}']);
      if (r.stdout.trim() === 'True') return;
      if (Date.now() > until) throw new Error(`policy never programmed: ${r.stdout} ${r.stderr}`);
      await sleep(200);
    }
  };
  return { routeStatus, settled, agentRoutes, policyProgrammed };
}
