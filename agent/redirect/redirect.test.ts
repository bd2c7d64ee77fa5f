// Real kernel, real nftables: a pod namespace's TCP is redirected to the agent's port, and the
// agent recovers the original destination through SO_ORIGINAL_DST.
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { Redirector } from './nftables.ts';
import { buildNative } from '../../scripts/build-native.ts';

const id = randomBytes(3).toString('hex');
const node = `wrt-${id}-node`;
const podNs = `wrt-${id}-pod`;
const hostIf = `wrt${id}`;
const sh = (...a: string[]) => execFileSync(a[0] as string, a.slice(1), { encoding: 'utf8' });

function connect(dst: string): string {
  try {
    return execFileSync('ip', ['netns', 'exec', podNs, 'socat', '-T2', '-', `TCP:${dst},connect-timeout=2`], { encoding: 'utf8', input: '' }).trim();
  } catch (e) {
    return `failed: ${(e as { stderr?: string }).stderr ?? String(e)}`;
  }
}

t.before(() => {
  buildNative();
  sh('ip', 'netns', 'add', node);
  sh('ip', 'netns', 'add', podNs);
  sh('ip', '-n', node, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs);
  sh('ip', '-n', node, 'addr', 'add', '10.251.0.1/24', 'dev', hostIf);
  sh('ip', '-n', node, 'link', 'set', hostIf, 'up');
  sh('ip', '-n', node, 'link', 'set', 'lo', 'up');
  sh('ip', '-n', podNs, 'addr', 'add', '10.251.0.2/24', 'dev', 'eth0');
  sh('ip', '-n', podNs, 'link', 'set', 'eth0', 'up');
  sh('ip', '-n', podNs, 'route', 'add', 'default', 'via', '10.251.0.1');
});

t.teardown(() => {
  for (const ns of [podNs, node]) {
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      /* already gone */
    }
  }
});

t.test('enrolled pod traffic reaches the agent with its original destination', async (t) => {
  const server = spawn('nsenter', [`--net=/run/netns/${node}`, '--', process.execPath, new URL('./testdata/origdst-server.ts', import.meta.url).pathname, '15001'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => void server.kill('SIGKILL'));
  await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()));

  const r = new Redirector({ netns: node });
  const pod = { hostInterface: hostIf, ips: ['10.251.0.2'] };
  t.equal(connect('10.251.7.7:8080').startsWith('failed'), true, 'before enrolment nothing is redirected');

  await r.sync([]);
  await r.enrol(pod);
  t.ok(await r.isEnrolled(pod), 'the pod is in the sets');
  t.equal(connect('10.251.7.7:8080'), '10.251.7.7:8080', 'a connection to any address is captured with its destination');
  t.equal(connect('10.251.0.1:443'), '10.251.0.1:443', 'even to the node itself');

  await r.release(pod);
  await r.release(pod); // idempotent
  t.notOk(await r.isEnrolled(pod), 'released');
  t.ok(connect('10.251.7.7:8080').startsWith('failed'), 'after release traffic is not captured');

  await r.sync([pod]);
  t.equal(connect('10.251.7.7:9090'), '10.251.7.7:9090', 'sync() rebuilds the table with the pod enrolled');
  await r.remove();
  t.ok(connect('10.251.7.7:8080').startsWith('failed'), 'after remove() the table is gone');
});

t.test('bad input is refused before it reaches nft', async (t) => {
  const r = new Redirector({ netns: node });
  await t.rejects(r.enrol({ hostInterface: 'eth0; flush ruleset', ips: [] }), { code: 'BAD_IFNAME' });
  await t.rejects(r.enrol({ hostInterface: 'veth0', ips: ['10.0.0.300'] }), { code: 'BAD_IP' });
});
