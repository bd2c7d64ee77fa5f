import t from 'tap';
import type { Workload } from '../../api/agent-sync.ts';
import type { AgentStatus } from '../server/agent-registry.ts';
import type { PolicyVerdict } from './reconciler.ts';
import { computeStatus, sameStatus, type StatusInput } from './status.ts';

const w = (name: string, node: string, meshed = true): Workload => ({
  key: `shop/${name}`, uid: name, namespace: 'shop', name, node, ips: [], serviceAccount: 'default',
  identity: 'spiffe://cluster.local/ns/shop/sa/default', meshed, labels: {}, namedPorts: {},
});
const accepted: PolicyVerdict = { kind: 'AccessPolicy', key: 'shop/p', generation: 2, accepted: true, problems: [], warnings: [], inForceGeneration: 2 };
const agent = (node: string, acked: number, o: Partial<AgentStatus> = {}): AgentStatus => ({ node, streams: 1, agentVersion: 'x', peer: '', epoch: 'e1', lastAckedRevision: acked, ...o });

function input(o: Partial<StatusInput> = {}): StatusInput {
  const agents = new Map([['n1', agent('n1', 10)], ['n2', agent('n2', 10)]]);
  return {
    generation: 2, verdict: accepted, selected: [w('a', 'n1'), w('b', 'n2'), w('c', 'n2'), w('plain', 'n3', false)], refProblems: [],
    revision: 10, epoch: 'e1', agents: (n) => agents.get(n), previous: undefined, now: new Date('2026-01-01T00:00:00Z'), ...o,
  };
}
const cond = (s: ReturnType<typeof computeStatus>, type: string) => s.conditions.find((c) => c.type === type);

t.test('in force everywhere: counts, nodes, all three conditions True', async (t) => {
  const s = computeStatus(input());
  t.equal(s.selectedWorkloads, 3);
  t.equal(s.unmeshedWorkloads, 1, 'a selected pod outside the mesh is counted apart');
  t.same(s.nodes, { programmed: 2, total: 2, pending: [] }, 'only nodes that host a meshed selected pod need it');
  t.equal(s.programmedNodes, '2/2');
  for (const type of ['Accepted', 'ResolvedRefs', 'Programmed']) t.equal(cond(s, type)?.status, 'True', type);
  t.equal(cond(s, 'Programmed')?.observedGeneration, 2);
});

t.test('a node behind, disconnected or refusing is named with the reason', async (t) => {
  const agents = new Map([
    ['n1', agent('n1', 9)],
    ['n2', agent('n2', 3, { streams: 0, disconnectedAt: '2026-01-01T00:00:00Z' })],
  ]);
  const s = computeStatus(input({ agents: (n) => agents.get(n) }));
  t.same(s.nodes, { programmed: 0, total: 2, pending: ['n1', 'n2'] });
  t.match(cond(s, 'Programmed'), { status: 'False', reason: 'Pending' });
  t.match(cond(s, 'Programmed')?.message, /n1 \(its agent has not acknowledged the update yet\).*n2 \(its agent is disconnected since/);
  const nacked = new Map([['n1', agent('n1', 9, { lastNack: { epoch: 'e1', revision: 10, reason: 'bad policy', at: '' } })], ['n2', agent('n2', 10)]]);
  t.match(cond(computeStatus(input({ agents: (n) => nacked.get(n) })), 'Programmed')?.message, /n1 \(its agent refused the update: bad policy\)/);
  const otherEpoch = new Map([['n1', agent('n1', 99, { epoch: 'old' })], ['n2', agent('n2', 10)]]);
  t.equal(computeStatus(input({ agents: (n) => otherEpoch.get(n) })).nodes.programmed, 1, "an ACK from another controller epoch does not count");
});

t.test('an invalid update: Accepted=False with the paths, the last good generation named', async (t) => {
  const verdict: PolicyVerdict = { ...accepted, generation: 3, accepted: false, problems: [{ path: 'spec.rules[0].to[0].paths[0]', message: 'bad *' }], inForceGeneration: 2 };
  const s = computeStatus(input({ generation: 3, verdict }));
  t.match(cond(s, 'Accepted'), { status: 'False', reason: 'Invalid', observedGeneration: 3 });
  t.match(cond(s, 'Accepted')?.message, /spec\.rules\[0\]\.to\[0\]\.paths\[0\]: bad \*\. Generation 2 remains in force\./);
  t.match(cond(s, 'Programmed'), { status: 'False', reason: 'Invalid' });
  const never = computeStatus(input({ generation: 1, verdict: { ...verdict, generation: 1, inForceGeneration: undefined }, revision: undefined, selected: [] }));
  t.match(cond(never, 'Accepted')?.message, /Nothing from this policy is enforced/);
});

t.test('reference problems make ResolvedRefs False; transition times move only with the status', async (t) => {
  const s1 = computeStatus(input({ refProblems: [{ path: 'spec.rules[0]', message: 'uses HTTP fields but port 9000 of shop/a is not an HTTP port' }] }));
  t.match(cond(s1, 'ResolvedRefs'), { status: 'False', reason: 'NotHTTPPort' });
  const later = new Date('2026-01-02T00:00:00Z');
  const s2 = computeStatus(input({ previous: s1, now: later }));
  t.equal(cond(s2, 'Accepted')?.lastTransitionTime, '2026-01-01T00:00:00.000Z', 'unchanged condition keeps its time');
  t.equal(cond(s2, 'ResolvedRefs')?.lastTransitionTime, later.toISOString(), 'a changed condition gets a new one');
  t.ok(sameStatus(s2, computeStatus(input({ previous: s2, now: new Date('2027-01-01T00:00:00Z') }))), 'equal apart from times: no write');
  t.notOk(sameStatus(s1, s2), 'a real change is a write');
});

t.test('lastAccepted: the spec in force is kept in the status, for a controller that restarts', async (t) => {
  const spec = { rules: [{ from: [{ namespaces: ['shop'] }] }] };
  const ok = computeStatus(input({ verdict: { ...accepted, inForceSpec: spec } }));
  t.same(ok.lastAccepted, { generation: 2, spec }, 'an accepted generation is recorded with its spec');
  const refused: PolicyVerdict = { ...accepted, generation: 3, accepted: false, problems: [{ path: 'spec', message: 'bad' }], inForceGeneration: 2, inForceSpec: spec };
  t.same(computeStatus(input({ generation: 3, verdict: refused })).lastAccepted, { generation: 2, spec }, 'a refused update keeps the one in force');
  t.same(computeStatus(input({ generation: 3, verdict: undefined, previous: ok })).lastAccepted, { generation: 2, spec }, 'no verdict yet: what the object carries stays');
  const never: PolicyVerdict = { ...refused, generation: 1, inForceGeneration: undefined, inForceSpec: undefined };
  t.equal(computeStatus(input({ generation: 1, verdict: never })).lastAccepted, undefined, 'never valid: nothing recorded');
  t.notOk(sameStatus(computeStatus(input({ verdict: accepted })), ok), 'a new lastAccepted is a change worth writing');
});
