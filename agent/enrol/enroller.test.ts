// The enroller hands each pod's probe ports to the redirector with the pod, and fills them in for
// enrolments restored from a checkpoint written before probe ports were known.
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Workload } from '../../api/agent-sync.ts';
import { Redirector } from '../redirect/nftables.ts';
import type { EnrolledPod } from '../redirect/rules.ts';
import { StateStore } from '../state/store.ts';
import { NodeEnroller, type Enrolment } from './enroller.ts';

/** Records what would have been sent to nft. */
class RecordingRedirector extends Redirector {
  readonly calls: [string, EnrolledPod[]][] = [];
  override async sync(pods: EnrolledPod[]): Promise<void> {
    this.calls.push(['sync', pods]);
  }
  override async enrol(pod: EnrolledPod): Promise<void> {
    this.calls.push(['enrol', [pod]]);
  }
  override async release(pod: EnrolledPod): Promise<void> {
    this.calls.push(['release', [pod]]);
  }
}

const workload: Workload = {
  key: 'shop/api',
  uid: 'uid-api',
  namespace: 'shop',
  name: 'api',
  node: 'n1',
  ips: ['10.1.0.2'],
  serviceAccount: 'api',
  identity: 'spiffe://cluster.local/ns/shop/sa/api',
  meshed: true,
  labels: {},
  namedPorts: {},
  probePorts: [8080, 9090],
};

function storeWith(w: Workload): StateStore {
  const store = new StateStore();
  store.apply({ type: 'snapshot', epoch: 'e1', revision: 1, config: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' }, resources: [{ kind: 'Workload', value: w }] });
  return store;
}

async function setup(t: Test, saved?: Enrolment[]) {
  const dir = await mkdtemp(join(tmpdir(), 'rdh-enrol-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'enrolled.json');
  if (saved) await writeFile(stateFile, JSON.stringify(saved));
  const redirector = new RecordingRedirector();
  const enroller = new NodeEnroller({ node: 'n1', store: storeWith(workload), redirector, stateFile, log: () => {} });
  return { enroller, redirector, stateFile };
}

t.test('a pod enrolled through CNI ADD carries its probe ports', async (t) => {
  const { enroller, redirector } = await setup(t);
  const r = await enroller.enrol({ pod: { namespace: 'shop', name: 'api', uid: 'uid-api' }, containerId: 'c1', ifname: 'eth0', netns: '/run/netns/x', ips: ['10.1.0.2'], hostInterface: 'veth1' });
  t.same(r, { result: 'enrolled' });
  t.same(redirector.calls, [['enrol', [{ key: 'shop/api', uid: 'uid-api', hostInterface: 'veth1', ips: ['10.1.0.2'], containerId: 'c1', ifname: 'eth0', probePorts: [8080, 9090] }]]]);
});

t.test('an enrolment checkpointed without probe ports gets them on reconcile, and keeps them', async (t) => {
  const old: Enrolment = { key: 'shop/api', uid: 'uid-api', hostInterface: 'veth1', ips: ['10.1.0.2'], containerId: 'c1', ifname: 'eth0' };
  const { enroller, redirector, stateFile } = await setup(t, [old]);
  await enroller.start();
  t.same(redirector.calls, [['sync', [old]]], 'the restored table is the checkpoint, as it was');
  // start() schedules the reconcile that follows the store.
  for (let i = 0; i < 100 && redirector.calls.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(redirector.calls.slice(1), [['enrol', [{ ...old, probePorts: [8080, 9090] }]]], 'the probe pairs are added to the live table');
  t.same((JSON.parse(await readFile(stateFile, 'utf8')) as Enrolment[])[0]?.probePorts, [8080, 9090], 'and to the checkpoint');
  await enroller.reconcile();
  t.equal(redirector.calls.length, 2, 'a second reconcile changes nothing');
});
