import t from 'tap';
import type { Workload } from '../../api/agent-sync.ts';
import type { AgentStatus } from '../server/agent-registry.ts';
import { parseReport, RemoteProgrammed, reportName } from './programmed-reports.ts';
import type { ProgrammedReport } from './programmed-reports.ts';
import type { PolicyVerdict } from './reconciler.ts';
import { computeStatus } from './status.ts';

const w = (name: string, node: string): Workload => ({
  key: `shop/${name}`, uid: name, namespace: 'shop', name, node, ips: [], serviceAccount: 'default',
  identity: 'spiffe://cluster.local/ns/shop/sa/default', meshed: true, labels: {}, namedPorts: {},
});
const verdict: PolicyVerdict = { kind: 'AccessPolicy', key: 'shop/p', generation: 4, accepted: true, problems: [], warnings: [], inForceGeneration: 4 };
const leaderAgents = new Map<string, AgentStatus>([['n1', { node: 'n1', streams: 1, agentVersion: 'x', peer: '', epoch: 'leader', lastAckedRevision: 20 }]]);
const standby: ProgrammedReport = { replica: 'weft-controller-b', nodes: ['n2', 'n3'], policies: { 'AccessPolicy/shop/p': { generation: 4, nodes: [0] } } };

function status(reports: ProgrammedReport[], generation = 4) {
  const remote = new RemoteProgrammed(reports);
  return computeStatus({
    generation, verdict: { ...verdict, generation, inForceGeneration: generation }, selected: [w('a', 'n1'), w('b', 'n2'), w('c', 'n3')], refProblems: [],
    revision: 20, epoch: 'leader', agents: (n) => leaderAgents.get(n),
    remote: (n) => remote.evidence('AccessPolicy/shop/p', generation, n), previous: undefined, now: new Date(0),
  });
}

t.test("the leader counts nodes whose agents another replica reports", async (t) => {
  const alone = status([]);
  t.same(alone.nodes.pending, ['n2', 'n3'], 'without reports only its own agents count');
  t.match(alone.conditions.find((c) => c.type === 'Programmed')?.message, /n2 \(its agent never connected to this controller\)/);

  const s = status([standby]);
  t.same(s.nodes, { programmed: 2, total: 3, pending: ['n3'] }, 'n2 is programmed by the standby report; n3 is connected there but has not acknowledged');
  t.match(s.conditions.find((c) => c.type === 'Programmed')?.message, /n3 \(its agent, connected to replica weft-controller-b, has not acknowledged it yet\)/);

  const both = status([{ ...standby, policies: { 'AccessPolicy/shop/p': { generation: 4, nodes: [0, 1] } } }]);
  t.equal(both.conditions.find((c) => c.type === 'Programmed')?.status, 'True', 'every node held by one replica or the other');

  const older = status([standby], 5);
  t.same(older.nodes.pending, ['n2', 'n3'], 'a report of another generation proves nothing about this one');
});

t.test('a malformed report is ignored, never trusted', async (t) => {
  t.same(parseReport(JSON.stringify(standby)), standby);
  for (const bad of ['', 'nope', '[]', '{"replica":1,"nodes":[],"policies":{}}', '{"replica":"r","nodes":["n1"],"policies":{"k":{"generation":1,"nodes":[3]}}}', '{"replica":"r","nodes":["n1"],"policies":{"k":{"generation":"1","nodes":[0]}}}']) {
    t.equal(parseReport(bad), undefined, `refused: ${bad || '(empty)'}`);
  }
});

t.test('report names are valid ConfigMap names for any replica identity', async (t) => {
  t.equal(reportName('weft-controller-7d9f-abcde'), 'weft-programmed-weft-controller-7d9f-abcde');
  t.equal(reportName('Host_Name-1234'), 'weft-programmed-host-name-1234');
  t.match(reportName('x'.repeat(400)), /^[a-z0-9-]{1,253}$/);
});
