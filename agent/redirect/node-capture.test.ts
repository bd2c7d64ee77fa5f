// Real kernel, real nftables: what the node itself sends to an enrolled pod is captured (only the
// kubelet's probe ports and the agent's own marked connections go through), and IPv6 TCP to and
// from an enrolled pod is reset on every path. Three namespaces: the node, an enrolled pod (A)
// and a pod outside the mesh (B), each pod on its own veth like a ptp CNI wires it.
import t from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { buildNative } from '../../scripts/build-native.ts';
import { Redirector } from './nftables.ts';

const id = randomBytes(3).toString('hex');
const ns = { node: `rdh-${id}-node`, a: `rdh-${id}-a`, b: `rdh-${id}-b` };
const ifA = `rdh${id}a`;
const ifB = `rdh${id}b`;
const A = { ip4: '10.252.1.2', ip6: 'fd52:1::2', hostIp6: 'fd52:1::1' };
const B = { ip4: '10.252.2.2', ip6: 'fd52:2::2' };
const APP = 9000;
const PROBE = 8080;
const NODE_PORT = 7000;
const podA = { hostInterface: ifA, ips: [A.ip4, A.ip6], probePorts: [PROBE] };
const sh = (...a: string[]) => execFileSync(a[0] as string, a.slice(1), { encoding: 'utf8' });
const children: ChildProcess[] = [];

/** What a TCP client in `from` reads from `host:port`, or why it could not connect. */
function connect(from: string, host: string, port: number): string {
  const address = host.includes(':') ? `TCP6:[${host}]:${port}` : `TCP4:${host}:${port}`;
  try {
    return execFileSync('ip', ['netns', 'exec', from, 'socat', '-T2', '-', `${address},connect-timeout=2`], { encoding: 'utf8', input: '', stdio: ['pipe', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return `failed: ${String((e as { stderr?: string }).stderr ?? e).trim()}`;
  }
}

/** The same, connecting as the agent does (SO_MARK set before the SYN). */
function agentConnect(host: string, port: number): string {
  const script = new URL('./testdata/uncaptured-dial.ts', import.meta.url).pathname;
  try {
    return execFileSync('ip', ['netns', 'exec', ns.node, process.execPath, script, host, String(port)], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (e) {
    return `failed: ${String((e as { stdout?: string }).stdout ?? e).trim()}`;
  }
}

async function serve(netns: string, script: string, ...args: string[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, new URL(`./testdata/${script}`, import.meta.url).pathname, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

const refused = /failed: .*Connection refused/;

t.teardown(() => {
  for (const c of children) c.kill('SIGKILL');
  // Deleting a namespace takes its veth ends and its nftables table with it.
  for (const n of Object.values(ns)) {
    try {
      sh('ip', 'netns', 'del', n);
    } catch {
      /* never created, or already gone */
    }
  }
});

t.before(async () => {
  buildNative();
  for (const n of Object.values(ns)) sh('ip', 'netns', 'add', n);
  sh('ip', 'netns', 'exec', ns.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
  sh('ip', '-n', ns.node, 'link', 'set', 'lo', 'up');
  for (const [host, pod, n] of [[ifA, ns.a, 1], [ifB, ns.b, 2]] as const) {
    sh('ip', '-n', ns.node, 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod);
    sh('ip', '-n', ns.node, 'addr', 'add', `10.252.${n}.1/24`, 'dev', host);
    sh('ip', '-n', ns.node, 'addr', 'add', `fd52:${n}::1/64`, 'dev', host, 'nodad');
    sh('ip', '-n', ns.node, 'link', 'set', host, 'up');
    sh('ip', '-n', pod, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', pod, 'addr', 'add', `10.252.${n}.2/24`, 'dev', 'eth0');
    sh('ip', '-n', pod, 'addr', 'add', `fd52:${n}::2/64`, 'dev', 'eth0', 'nodad');
    sh('ip', '-n', pod, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', pod, 'route', 'add', 'default', 'via', `10.252.${n}.1`);
    sh('ip', '-n', pod, '-6', 'route', 'add', 'default', 'via', `fd52:${n}::1`);
  }
  // Service addresses need a route to be sent at all (kube-proxy's DNAT happens after routing).
  sh('ip', '-n', ns.node, 'route', 'add', '10.96.0.0/24', 'dev', ifA);
  await serve(ns.a, 'pod-server.ts', String(APP), String(PROBE));
  await serve(ns.node, 'pod-server.ts', String(NODE_PORT)); // a node service, for pod → node
  await serve(ns.node, 'origdst-server.ts', '15006'); // the agent's inbound plaintext port
});

t.test('without Weft every path is open (the controls for what follows)', async (t) => {
  t.equal(connect(ns.node, A.ip4, APP), `pod:${APP}`, 'node → pod');
  t.equal(connect(ns.node, A.ip6, APP), `pod:${APP}`, 'node → pod over IPv6');
  t.equal(connect(ns.b, A.ip6, APP), `pod:${APP}`, 'another pod → pod over IPv6 (forwarded)');
  t.equal(connect(ns.a, A.hostIp6, NODE_PORT), `pod:${NODE_PORT}`, 'pod → node over IPv6');
  t.equal(connect(ns.a, B.ip6, APP).startsWith('failed'), true, 'B serves nothing: pod → B is refused by B itself');
});

t.test('the node is captured like any plaintext client, except the probes and the agent', async (t) => {
  const r = new Redirector({ netns: ns.node });
  await r.sync([podA]);
  t.equal(connect(ns.node, A.ip4, APP), `${A.ip4}:${APP}`, 'node → pod reaches the agent (15006) with its original destination');
  t.equal(connect(ns.node, A.ip4, PROBE), `pod:${PROBE}`, "the kubelet's probe port goes straight to the pod");
  t.equal(agentConnect(A.ip4, APP), `pod:${APP}`, "the agent's own connection (BYPASS_MARK) is not captured");
  t.equal(connect(ns.b, A.ip4, APP), `${A.ip4}:${APP}`, 'another pod → pod is captured, as before');
  t.equal(connect(ns.b, A.ip4, PROBE), `${A.ip4}:${PROBE}`, 'the probe exemption is for the node only');
});

t.test('IPv6 TCP to and from an enrolled pod is reset on every path', async (t) => {
  const r = new Redirector({ netns: ns.node });
  await r.sync([podA]);
  t.match(connect(ns.node, A.ip6, APP), refused, 'node → pod');
  t.match(connect(ns.node, A.ip6, PROBE), refused, 'node → pod, even on a probe port');
  t.match(connect(ns.b, A.ip6, APP), refused, 'another pod → pod (forward)');
  t.match(connect(ns.a, A.hostIp6, NODE_PORT), refused, 'pod → node');
  t.equal(connect(ns.b, A.hostIp6, NODE_PORT), `pod:${NODE_PORT}`, 'a pod outside the mesh keeps its IPv6');
  sh('ip', '-n', ns.a, 'addr', 'add', 'fd52:1::99/64', 'dev', 'eth0', 'nodad');
  t.match(connect(ns.b, 'fd52:1::99', APP), refused, 'an address added by hand, which the agent never heard of, is closed too');
});

t.test('enrol and release carry the probe pairs with the pod', async (t) => {
  const r = new Redirector({ netns: ns.node });
  await r.sync([]);
  t.equal(connect(ns.node, A.ip4, APP), `pod:${APP}`, 'not enrolled: not captured');
  await r.enrol(podA);
  t.equal(connect(ns.node, A.ip4, APP), `${A.ip4}:${APP}`, 'enrolled: captured');
  t.equal(connect(ns.node, A.ip4, PROBE), `pod:${PROBE}`, 'with its probe port exempt');
  await r.release(podA);
  t.match(sh('ip', 'netns', 'exec', ns.node, 'nft', 'list', 'set', 'inet', 'weft', 'probes4'), /type ipv4_addr \. inet_service\s*\n\s*}/, 'the probe pairs left with the pod');
  t.equal(connect(ns.node, A.ip4, APP), `pod:${APP}`, 'released: not captured');
});

t.test("a Service address backed by the pod is captured from the node, before kube-proxy's DNAT", async (t) => {
  // kube-proxy, as far as it matters here: a nat output chain at dstnat (-100) that translates
  // two Service addresses to the pod.
  const kubeProxy = [
    'table ip rdh_kube_proxy {',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    `    ip daddr { 10.96.0.10, 10.96.0.11 } tcp dport 80 dnat to ${A.ip4}:${APP}`,
    '  }',
    '}',
    '',
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', ns.node, 'nft', '-f', '-'], { input: kubeProxy });
  t.teardown(() => void execFileSync('ip', ['netns', 'exec', ns.node, 'nft', 'delete', 'table', 'ip', 'rdh_kube_proxy']));
  const r = new Redirector({ netns: ns.node });
  await r.sync([podA]);
  t.equal(connect(ns.node, '10.96.0.10', 80), `pod:${APP}`, 'control: with the pod alone captured, its Service is a way around');
  await r.captureServices([{ ip: '10.96.0.10', port: 80 }]);
  t.equal(connect(ns.node, '10.96.0.10', 80), '10.96.0.10:80', 'captured, with the Service address the agent resolves itself');
  t.equal(connect(ns.node, '10.96.0.11', 80), `pod:${APP}`, 'only the listed addresses');
  await r.sync([podA]);
  t.equal(connect(ns.node, '10.96.0.10', 80), '10.96.0.10:80', 'a rebuilt table keeps them');
  await r.captureServices([]);
  t.equal(connect(ns.node, '10.96.0.10', 80), `pod:${APP}`, 'and they can be taken back');
});

t.test('captureNode: false trusts the node, and nothing else', async (t) => {
  const r = new Redirector({ netns: ns.node, captureNode: false });
  await r.sync([podA]);
  t.equal(connect(ns.node, A.ip4, APP), `pod:${APP}`, 'node → pod goes straight through');
  t.equal(connect(ns.node, A.ip6, APP), `pod:${APP}`, 'over IPv6 too');
  t.equal(connect(ns.b, A.ip4, APP), `${A.ip4}:${APP}`, 'another pod is still captured');
  t.match(connect(ns.b, A.ip6, APP), refused, 'and still closed over IPv6');
  await r.remove();
});
