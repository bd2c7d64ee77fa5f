import t from 'tap';
import { planPlayground, podNetnsName } from './config.ts';

t.test('two playgrounds never share addresses, ports or names', async (t) => {
  const a = planPlayground('alpha', 0, 2);
  const b = planPlayground('beta', 1, 2);
  t.not(a.hostIP, b.hostIP);
  t.not(a.etcdClientPort, b.etcdClientPort);
  t.not(a.nodes[0]?.netns, b.nodes[0]?.netns);
  t.not(a.nodes[0]?.podCIDR, b.nodes[0]?.podCIDR);
  t.not(a.hostLink, b.hostLink);
});

t.test('node pod CIDRs are disjoint and inside the cluster CIDR', async (t) => {
  const p = planPlayground('weft', 3, 3);
  t.equal(p.clusterCIDR, '10.203.128.0/17');
  t.same(
    p.nodes.map((n) => n.podCIDR),
    ['10.203.129.0/24', '10.203.130.0/24', '10.203.131.0/24'],
  );
});

t.test('names that would overflow an interface name are refused', async (t) => {
  t.throws(() => planPlayground('much-too-long-name', 0, 1), /must match/);
  t.throws(() => planPlayground('ok', 99, 1), /slot/);
  t.ok(planPlayground('abcdefgh', 0, 1).hostLink.length <= 15);
});

t.test('pod netns names are derived from the UID', async (t) => {
  t.equal(podNetnsName('weft', '1234abcd-5678-90ef-1234-567890abcdef'), 'wpg-weft-pod-1234abcd5678');
});
