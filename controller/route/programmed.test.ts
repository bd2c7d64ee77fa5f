import t from 'tap';
import type { Workload } from '../../api/agent-sync.ts';
import type { CompiledRoute } from '../../api/route.ts';
import type { AgentStatus } from '../server/agent-registry.ts';
import { routeNodes, routeProgrammed } from './programmed.ts';

const w = (ns: string, node: string, meshed = true) => ({ key: `${ns}/${node}-pod`, namespace: ns, node, meshed }) as Workload;
const route = (ns: string, parent: string): CompiledRoute => ({ key: `HTTPRoute/${ns}/r`, kind: 'HTTPRoute', namespace: ns, name: 'r', generation: 4, created: '', parents: [{ service: parent }], rules: [] });
const workloads = [w('a', 'n1'), w('a', 'n2'), w('b', 'n3'), w('b', 'n4', false)];
const agent = (node: string, acked: number, extra: Partial<AgentStatus> = {}) => ({ node, epoch: 'e', lastAckedRevision: acked, streams: 1, ...extra }) as AgentStatus;

t.test('a producer route needs every meshed node; a consumer route its own namespace\'s', async (t) => {
  t.same(routeNodes(route('a', 'a/web'), workloads), ['n1', 'n2', 'n3']);
  t.same(routeNodes(route('b', 'a/web'), workloads), ['n3'], 'a consumer route in b: only b\'s meshed pods\' node');
});

t.test('programmed counts the nodes whose agent acknowledged the revision that carries the route', async (t) => {
  const agents = new Map([['n1', agent('n1', 7)], ['n2', agent('n2', 5)]]);
  const p = routeProgrammed({ route: route('a', 'a/web'), revision: 6, epoch: 'e', workloads, agents: (n) => agents.get(n) });
  t.equal(p.ok, false);
  t.equal(p.reason, 'Pending');
  t.same([p.programmed, p.total], [1, 3]);
  t.match(p.message, /in force on 1\/3 nodes/);
  t.match(p.message, /n2 \(its agent has not acknowledged the update yet\)/);
  t.match(p.message, /n3 \(its agent never connected to this controller\)/);
  const remote = routeProgrammed({ route: route('a', 'a/web'), revision: 5, epoch: 'e', workloads, agents: (n) => agents.get(n), remote: (n) => (n === 'n3' ? { held: true, replica: 'r2' } : undefined) });
  t.equal(remote.ok, true, 'another replica\'s report vouches for n3');
  t.match(remote.message, /in force on 3\/3 nodes/);
  const otherEpoch = routeProgrammed({ route: route('b', 'a/web'), revision: 1, epoch: 'e2', workloads, agents: () => agent('n3', 9) });
  t.equal(otherEpoch.ok, false, 'an ACK of another store epoch does not count');
  const none = routeProgrammed({ route: route('c', 'a/web'), revision: 1, epoch: 'e', workloads, agents: () => undefined });
  t.same([none.ok, none.total], [true, 0]);
});
