// The built weft-cni executable, run as a runtime runs it (exec, CNI_* env, config on stdin),
// against the real CNI server of the agent. The chain through cnitool and network namespaces is
// in chain.test.ts; this file covers every command and failure mode one exec at a time.
import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseWeftCniSettings } from '../api/cni.ts';
import { createCniServer } from '../agent/cni/server.ts';
import type { CniServer, CniServerLog } from '../agent/cni/server.ts';
import { RecordingEnroller } from '../agent/cni/test-enroller.ts';
import { weftCniEntry } from '../agent/cni/conflist.ts';
import { buildCni } from '../scripts/build-cni.ts';
import { execCapture, execPlugin } from './testing/exec-plugin.ts';
import type { PluginRun } from './testing/exec-plugin.ts';
import { startFakeKubeApi } from './testing/fake-kube-api.ts';

const quiet: CniServerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };
const { path: exe } = await buildCni();
const dir = await mkdtemp(join(tmpdir(), 'weft-cni-exec-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const socketPath = join(dir, 'cni.sock');
const logFile = join(dir, 'cni.log');
const api = await startFakeKubeApi(dir, {
  pods: {
    'labelled/web-0': { uid: 'uid-web-0' },
    'labelled/opted-out': { uid: 'uid-opted-out', annotations: { 'weft.dev/mesh': 'disabled' } },
    'plain/annotated': { uid: 'uid-annotated', annotations: { 'weft.dev/mesh': 'enabled' } },
    'plain/bystander': { uid: 'uid-bystander' },
  },
  namespaces: { labelled: { labels: { 'weft.dev/mesh': 'enabled' } }, plain: {} },
});
t.teardown(() => api.close());

/** A prevResult as a 1.0.0 interface plugin returns it, with fields weft-cni must not touch. */
const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'veth5f3a', mac: '5e:12:34:56:78:9a' },
    { name: 'eth0', mac: '0a:58:0a:01:00:05', mtu: 1450, sandbox: '/run/netns/p1' },
  ],
  ips: [
    { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 },
    { address: 'fd00:10:1::5/64', gateway: 'fd00:10:1::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1450 }],
  dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'], options: ['ndots:5'] },
  'example.com/extension': { kept: [1, 2.5, null, true] },
};

interface Call {
  command: string;
  pod?: [namespace: string, name: string, uid?: string];
  settings?: Record<string, unknown>;
  prev?: unknown;
  cniVersion?: string;
  netns?: string | null;
  extra?: Record<string, unknown>;
}

function pluginCall(c: Call): Promise<PluginRun> {
  const settings = weftCniEntry(
    parseWeftCniSettings({
      agentSocket: socketPath,
      timeoutMs: 2000,
      logFile,
      kubernetes: { apiServer: api.url, caFile: api.caFile, tokenFile: api.tokenFile },
      ...c.settings,
    }),
  );
  const conf = { cniVersion: c.cniVersion ?? '1.0.0', name: 'weft-test', ...settings, ...c.extra, prevResult: c.prev };
  const env: Record<string, string> = { CNI_COMMAND: c.command, CNI_CONTAINERID: 'cid-1', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' };
  if (c.netns !== null) env.CNI_NETNS = c.netns ?? '/run/netns/p1';
  if (c.pod) {
    env.CNI_ARGS = `IgnoreUnknown=1;K8S_POD_NAMESPACE=${c.pod[0]};K8S_POD_NAME=${c.pod[1]};K8S_POD_UID=${c.pod[2] ?? ''}`;
  }
  return execPlugin(exe, env, JSON.stringify(conf));
}

async function withAgent(t: { teardown(fn: () => unknown): void }): Promise<{ enroller: RecordingEnroller; server: CniServer }> {
  const enroller = new RecordingEnroller();
  const server = createCniServer({ socketPath, enroller, log: quiet });
  await server.listen();
  t.teardown(() => server.close());
  return { enroller, server };
}

/** Never a stack trace anywhere a person or a runtime reads. */
function noStack(t: Test, run: PluginRun): void {
  t.notMatch(run.stdout + run.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
}

function isCniError(t: Test, run: PluginRun, code: number, details?: RegExp): void {
  t.not(run.code, 0, 'non-zero exit');
  t.same(Object.keys(run.json as object).sort(), ['cniVersion', 'code', 'details', 'msg'], 'spec error object');
  t.match(run.json, { code, ...(details ? { details } : {}) });
  t.equal(run.stdout.trim().split('\n').length, 1, 'stdout holds the error object and nothing else');
  noStack(t, run);
}

t.test('VERSION lists the supported spec versions in the version asked', async (t) => {
  for (const v of ['1.1.0', '0.3.1']) {
    const run = await execPlugin(exe, { CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }));
    t.equal(run.code, 0);
    t.same(run.json, { cniVersion: v, supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  }
  // libcni passes the runtime's whole environment through; Node options in it must not apply.
  const injected = await execPlugin(exe, { CNI_COMMAND: 'VERSION', NODE_OPTIONS: '--require=/nonexistent/inject.js' }, '{"cniVersion":"1.1.0"}');
  t.equal(injected.code, 0, 'NODE_OPTIONS from the environment is ignored');
});

t.test('VERSION with empty stdin answers, as the reference plugins do; other malformed input is an error', async (t) => {
  // Debian's ptp (libcni's skel) answers VERSION without reading stdin: its newest version and the
  // list. A runtime probing a plugin with `</dev/null` must get the same kind of answer from us.
  const reference = '/usr/lib/cni/ptp';
  const ptp = await execPlugin(reference, { CNI_COMMAND: 'VERSION' }, '');
  t.equal(ptp.code, 0, `${reference} answers VERSION with empty stdin`);
  t.match(ptp.json, { cniVersion: String, supportedVersions: Array });
  for (const [what, stdin] of [['empty', ''], ['whitespace only', ' \n\t ']] as const) {
    const run = await execPlugin(exe, { CNI_COMMAND: 'VERSION' }, stdin);
    t.equal(run.code, 0, `${what}: exit 0`);
    t.same(run.json, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] }, `${what}: our newest version and the list`);
    t.same(Object.keys(run.json as object), Object.keys(ptp.json as object), `${what}: the same fields as ${reference}`);
  }
  const closedStdin = await execCapture('sh', ['-c', `exec "${exe}" <&-`], { CNI_COMMAND: 'VERSION' }, '');
  t.equal(closedStdin.code, 0, 'and with stdin closed, as ptp does');
  isCniError(t, await execPlugin(exe, { CNI_COMMAND: 'VERSION' }, '{"cniVersion": '), 6, /stdin is not JSON/);
  isCniError(t, await execPlugin(exe, { CNI_COMMAND: 'VERSION' }, '[]'), 6, /JSON object/);
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0' };
  isCniError(t, await execPlugin(exe, add, ''), 6, /stdin is not JSON/);
});

t.test('malformed input gets a spec error object with the spec code, never a stack trace', async (t) => {
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0' };
  const good = JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'weft-cni', prevResult });
  const cases: [string, Record<string, string>, string, number, RegExp][] = [
    ['stdin is not JSON', add, '{"cniVersion": "1.0.0", ', 6, /stdin is not JSON/],
    ['stdin is a JSON array', add, '[]', 6, /must be a JSON object/],
    ['no cniVersion', add, '{"name":"n"}', 7, /cniVersion/],
    ['unsupported cniVersion', add, '{"cniVersion":"9.0.0","name":"n"}', 1, /not supported/],
    ['bad weft-cni setting', add, JSON.stringify({ cniVersion: '1.0.0', name: 'n', timeoutMs: 'soon', prevResult }), 7, /timeoutMs: must be an integer/],
    ['ADD without prevResult', add, JSON.stringify({ cniVersion: '1.0.0', name: 'n' }), 7, /chained plugin/],
    ['no CNI_COMMAND', { ...add, CNI_COMMAND: '' }, good, 4, /CNI_COMMAND is not set/],
    ['unknown CNI_COMMAND', { ...add, CNI_COMMAND: 'ATTACH' }, good, 4, /ATTACH/],
    ['ADD without CNI_NETNS', { ...add, CNI_NETNS: '' }, good, 4, /CNI_NETNS/],
    ['malformed CNI_ARGS', { ...add, CNI_ARGS: 'K8S_POD_NAME' }, good, 4, /CNI_ARGS/],
  ];
  for (const [what, env, stdin, code, details] of cases) {
    await t.test(what, async (t) => isCniError(t, await execPlugin(exe, env, stdin), code, details));
  }
  const inVersion = await execPlugin(exe, add, JSON.stringify({ cniVersion: '0.4.0', name: 'n', agentSocket: 'x' }));
  t.match(inVersion.json, { cniVersion: '0.4.0', code: 7 }, 'errors come in the version the caller speaks');
});

t.test('ADD with the agent up: prevResult printed unchanged, the agent told who and where', async (t) => {
  const { enroller } = await withAgent(t);
  const run = await pluginCall({ command: 'ADD', pod: ['mesh-shop', 'cart-0', 'uid-cart-0'], prev: prevResult });
  t.equal(run.code, 0, run.stdout);
  t.same(run.json, prevResult, 'same JSON as prevResult');
  t.same(enroller.calls, [
    {
      op: 'enrol',
      req: {
        pod: { namespace: 'mesh-shop', name: 'cart-0', uid: 'uid-cart-0' },
        containerId: 'cid-1',
        ifname: 'eth0',
        netns: '/run/netns/p1',
        ips: ['10.1.0.5', 'fd00:10:1::5'],
        hostInterface: 'veth5f3a',
      },
    },
  ]);

  // A 0.3.1 result (IPs carry "version") from a bridge plugin ([bridge, veth, eth0]).
  const legacy = {
    cniVersion: '0.3.1',
    interfaces: [{ name: 'cni0', mac: 'aa:aa:aa:aa:aa:aa' }, { name: 'veth77', mac: 'bb:bb:bb:bb:bb:bb' }, { name: 'eth0', sandbox: '/run/netns/p1' }],
    ips: [{ version: '4', address: '10.2.0.9/16', gateway: '10.2.0.1', interface: 2 }],
  };
  const run2 = await pluginCall({ command: 'ADD', cniVersion: '0.3.1', pod: ['plain', 'web-1'], prev: legacy });
  t.equal(run2.code, 0);
  t.same(run2.json, legacy);
  t.match(enroller.calls.at(-1), { op: 'enrol', req: { ips: ['10.2.0.9'], hostInterface: 'veth77' } });
});

t.test('ADD waits for an agent that takes a while to enrol (the answer comes after the request)', async (t) => {
  const { enroller } = await withAgent(t);
  enroller.enrolDelayMs = 200;
  const run = await pluginCall({ command: 'ADD', pod: ['mesh-shop', 'cart-1', 'uid-cart-1'], prev: prevResult });
  t.equal(run.code, 0, run.stdout);
  t.same(run.json, prevResult);
  t.equal(enroller.enrolled.size, 1, 'the pod is enrolled');
});

t.test('ADD for something that is not a Kubernetes pod passes through without asking anyone', async (t) => {
  const { enroller } = await withAgent(t);
  const run = await pluginCall({ command: 'ADD', prev: prevResult });
  t.equal(run.code, 0);
  t.same(run.json, prevResult);
  t.same(enroller.calls, []);
});

t.test('agent down: excluded namespaces pass without any call', async (t) => {
  const before = api.requests.length;
  const run = await pluginCall({ command: 'ADD', pod: ['kube-system', 'coredns-0'], prev: prevResult });
  t.equal(run.code, 0);
  t.same(run.json, prevResult);
  t.equal(api.requests.length, before, 'the API server was not asked either');
});

t.test('agent down: the API server decides, meshed pods fail closed with 11', async (t) => {
  const meshed = await pluginCall({ command: 'ADD', pod: ['labelled', 'web-0', 'uid-web-0'], prev: prevResult });
  isCniError(t, meshed, 11, /pod is meshed \(namespace label weft\.dev\/mesh=enabled\) but the weft agent is unavailable/);
  t.match(meshed.json, { msg: 'Try again later' });

  const annotated = await pluginCall({ command: 'ADD', pod: ['plain', 'annotated', 'uid-annotated'], prev: prevResult });
  isCniError(t, annotated, 11, /pod annotation weft\.dev\/mesh=enabled/);

  const optedOut = await pluginCall({ command: 'ADD', pod: ['labelled', 'opted-out', 'uid-opted-out'], prev: prevResult });
  t.equal(optedOut.code, 0, 'a pod that opted out of a meshed namespace starts');
  t.same(optedOut.json, prevResult);

  const bystander = await pluginCall({ command: 'ADD', pod: ['plain', 'bystander'], prev: prevResult });
  t.equal(bystander.code, 0, 'a pod that never opted in starts');
  t.same(bystander.json, prevResult);

  t.ok(api.requests.length >= 8 && api.requests.every((r) => r.authorized), 'every API call carried the token');
  const log = await readFile(logFile, 'utf8');
  t.match(log, /agent unavailable/);
  t.notMatch(log, new RegExp(api.token), 'the token never reaches the log');
  t.notMatch(meshed.stdout + meshed.stderr + optedOut.stdout, new RegExp(api.token), 'nor stdout/stderr');
});

t.test('agent down and the API cannot tell: 11', async (t) => {
  const closedPort = await new Promise<number>((resolve) => {
    const s: Server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const unreachable = await pluginCall({
    command: 'ADD',
    pod: ['plain', 'bystander'],
    prev: prevResult,
    settings: { kubernetes: { apiServer: `https://127.0.0.1:${closedPort}`, caFile: api.caFile, tokenFile: api.tokenFile } },
  });
  isCniError(t, unreachable, 11, /Kubernetes API could not tell.*KUBE_UNREACHABLE/);

  const wrongTokenFile = join(dir, 'wrong-token');
  await writeFile(wrongTokenFile, 'not-the-token\n');
  const wrongToken = await pluginCall({
    command: 'ADD',
    pod: ['plain', 'bystander'],
    prev: prevResult,
    settings: { kubernetes: { apiServer: api.url, caFile: api.caFile, tokenFile: wrongTokenFile } },
  });
  isCniError(t, wrongToken, 11, /KUBE_HTTP: GET \/api\/v1\/namespaces\/plain\/pods\/bystander: HTTP 401/);

  const notAToken = await pluginCall({
    command: 'ADD',
    pod: ['plain', 'bystander'],
    prev: prevResult,
    settings: { kubernetes: { apiServer: api.url, caFile: api.caFile, tokenFile: api.caFile } },
  });
  isCniError(t, notAToken, 11, /KUBE_CREDENTIALS: .* does not hold a bearer token/);
  t.notMatch(notAToken.stdout, /BEGIN CERTIFICATE/, 'the file contents are not echoed');

  const recreated = await pluginCall({ command: 'ADD', pod: ['plain', 'bystander', 'uid-of-an-older-pod'], prev: prevResult });
  isCniError(t, recreated, 11, /KUBE_STALE_POD/);

  const noApi = await pluginCall({ command: 'ADD', pod: ['plain', 'bystander'], prev: prevResult, settings: { kubernetes: null } });
  isCniError(t, noApi, 11, /no Kubernetes API access is configured/);
});

t.test('an agent that is not ready, or does not answer in time, counts as unavailable', async (t) => {
  const { enroller } = await withAgent(t);
  enroller.readiness = { ready: false, reason: 'syncing' };
  const notReady = await pluginCall({ command: 'ADD', pod: ['labelled', 'web-0', 'uid-web-0'], prev: prevResult });
  isCniError(t, notReady, 11, /agent not ready: syncing/);
  const passes = await pluginCall({ command: 'ADD', pod: ['plain', 'bystander'], prev: prevResult });
  t.equal(passes.code, 0);

  // An agent that accepts connections and never answers.
  const hungSocket = join(dir, 'hung.sock');
  const hung = createServer(() => undefined).listen(hungSocket);
  t.teardown(() => hung.close());
  const slow = await pluginCall({
    command: 'ADD',
    pod: ['labelled', 'web-0', 'uid-web-0'],
    prev: prevResult,
    settings: { agentSocket: hungSocket, timeoutMs: 300 },
  });
  isCniError(t, slow, 11, /no answer within 300 ms/);
  t.ok(slow.ms < 3000, `bounded by the timeout (${Math.round(slow.ms)} ms)`);
});

t.test('an agent that fails to enrol fails ADD with a plugin code', async (t) => {
  const { enroller } = await withAgent(t);
  enroller.failNextEnrol = Object.assign(new Error('cannot add element to set'), { code: 'NFT_FAILED' });
  const run = await pluginCall({ command: 'ADD', pod: ['mesh-a', 'p'], prev: prevResult });
  isCniError(t, run, 101, /NFT_FAILED: cannot add element to set/);
});

t.test('DEL is idempotent, needs no netns and succeeds with the agent down', async (t) => {
  const { enroller, server } = await withAgent(t);
  t.equal((await pluginCall({ command: 'ADD', pod: ['mesh-a', 'p'], prev: prevResult })).code, 0);
  const first = await pluginCall({ command: 'DEL', pod: ['mesh-a', 'p'], prev: prevResult, netns: null });
  t.equal(first.code, 0);
  t.equal(first.stdout, '', 'DEL prints nothing');
  const second = await pluginCall({ command: 'DEL', pod: ['mesh-a', 'p'], netns: null });
  t.equal(second.code, 0);
  t.match(enroller.calls.slice(-2), [
    { op: 'release', req: { netns: null, ips: ['10.1.0.5', 'fd00:10:1::5'] } },
    { op: 'release', req: { netns: null, ips: [] } },
  ]);
  t.equal(enroller.enrolled.size, 0);

  await server.close();
  const down = await pluginCall({ command: 'DEL', pod: ['mesh-a', 'p'], netns: null });
  t.equal(down.code, 0, 'agent down: DEL still succeeds');
  t.match(await readFile(logFile, 'utf8'), /agent unavailable for DEL; it reconciles enrolments when it is back/);
});

t.test('CHECK asks the agent whether the redirection is still in place', async (t) => {
  const { enroller } = await withAgent(t);
  await pluginCall({ command: 'ADD', pod: ['mesh-a', 'p'], prev: prevResult });
  const ok = await pluginCall({ command: 'CHECK', pod: ['mesh-a', 'p'], prev: prevResult });
  t.equal(ok.code, 0);
  t.equal(ok.stdout, '');
  enroller.enrolled.clear(); // the agent lost the pod's rules
  isCniError(t, await pluginCall({ command: 'CHECK', pod: ['mesh-a', 'p'], prev: prevResult }), 102, /no enrolment/);
  const notMeshed = await pluginCall({ command: 'CHECK', pod: ['plain', 'x'], prev: prevResult });
  t.equal(notMeshed.code, 0, 'a pod that is not meshed has nothing to check');
});

t.test('GC forwards the valid attachments; STATUS reports the agent readiness', async (t) => {
  const { enroller, server } = await withAgent(t);
  await pluginCall({ command: 'ADD', pod: ['mesh-a', 'p'], prev: prevResult });
  const valid = [{ containerID: 'other', ifname: 'eth0' }];
  const gc = await pluginCall({ command: 'GC', cniVersion: '1.1.0', netns: null, extra: { 'cni.dev/valid-attachments': valid } });
  t.equal(gc.code, 0, gc.stdout);
  t.same(enroller.calls.at(-1), { op: 'gc', valid: [{ containerId: 'other', ifname: 'eth0' }] });
  t.equal(enroller.enrolled.size, 0, 'the stale enrolment was released');

  const before = enroller.calls.length;
  t.equal((await pluginCall({ command: 'GC', cniVersion: '1.1.0', netns: null })).code, 0, 'GC without a list');
  t.equal(enroller.calls.length, before, '...forwards nothing');

  t.equal((await pluginCall({ command: 'STATUS', cniVersion: '1.1.0', netns: null })).code, 0);
  enroller.readiness = { ready: false, reason: 'syncing' };
  isCniError(t, await pluginCall({ command: 'STATUS', cniVersion: '1.1.0', netns: null }), 50, /not ready: syncing/);
  await server.close();
  isCniError(t, await pluginCall({ command: 'STATUS', cniVersion: '1.1.0', netns: null }), 50, /unavailable/);
  isCniError(t, await pluginCall({ command: 'GC', cniVersion: '1.1.0', netns: null, extra: { 'cni.dev/valid-attachments': [] } }), 11);
});
