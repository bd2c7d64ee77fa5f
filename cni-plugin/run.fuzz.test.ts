// Fuzzing one CNI call where hostile bytes enter weft-cni: the CNI_* environment and the request
// configuration on stdin, into the plugin's real entry (run.ts), in-process, against a real agent
// CNI server on a unix socket (or none: the agent is down) and a fake Kubernetes API over TLS.
// Runs through tests/helpers/fuzz.ts (WEFT_FUZZ_SECONDS); seeds and past failures are in
// testdata/corpus/cni-call/. exec.test.ts runs the built executable on the same contract.
//
// An input is { env, stdin }. Generated calls are mostly well-formed configurations with one part
// made hostile (the version, prevResult, the weft-cni settings, the attachments of GC, CNI_ARGS),
// so that they get past JSON decoding into the commands. Paths the plugin would open (agent
// socket, log file, Kubernetes credentials) are kept inside this test's directory: the plugin
// trusts its configuration file, which only root writes, and the fuzzer must not write elsewhere.
//
// The property, per input: run() resolves within its deadline and prints exactly what the spec
// allows: exit 0 with one JSON result (or nothing, for DEL, CHECK, GC and STATUS), or exit 1 with
// one error object {cniVersion, code, msg, details}; never code 104 (weft-cni's own bug) and
// never a throw.
import t from 'tap';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFuzz } from '../tests/helpers/fuzz.ts';
import { createCniServer } from '../agent/cni/server.ts';
import { RecordingEnroller } from '../agent/cni/test-enroller.ts';
import { CNI_ERROR } from './errors.ts';
import { run } from './run.ts';
import { startFakeKubeApi } from './testing/fake-kube-api.ts';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'testdata', 'corpus', 'cni-call');
const TIMEOUT_MS = 300; // the plugin's own deadline for the agent and the API, as configured below
const DEADLINE_MS = 5_000;

const dir = await mkdtemp(join(tmpdir(), 'hb-cni-fuzz-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const agentSocket = join(dir, 'agent.sock');
const missingSocket = join(dir, 'nobody.sock');
const logFile = join(dir, 'cni.log');
const enroller = new RecordingEnroller();
const cniServer = createCniServer({ socketPath: agentSocket, enroller, log: { info: () => {}, warn: () => {}, error: () => {} } });
await cniServer.listen();
t.teardown(() => cniServer.close());
const api = await startFakeKubeApi(dir, {
  pods: { 'shop/web-0': { uid: 'u1' }, 'mesh/web-0': { uid: 'u2', annotations: { 'weft.dev/mesh': 'enabled' } } },
  namespaces: { shop: {}, mesh: { labels: { 'weft.dev/mesh': 'enabled' } } },
});
t.teardown(() => api.close());

export type CniCall = { env: Record<string, string>; stdin: string; unreadable?: boolean };

const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'veth1', mac: '5e:12:34:56:78:9a' }, { name: 'eth0', mac: '0a:58:0a:01:00:05', sandbox: '/run/netns/p1' }],
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }],
};

/** String() that survives objects such as { toString: 1 } (fc.anything makes them). */
function text(v: unknown): string {
  try {
    return String(v);
  } catch {
    return JSON.stringify(v) ?? '';
  }
}

/** Mostly the values that matter, sometimes anything. */
function mostly<T>(likely: fc.Arbitrary<T>, weight = 5): fc.Arbitrary<unknown> {
  return fc.oneof({ weight, arbitrary: likely }, { weight: 1, arbitrary: fc.anything({ maxDepth: 2 }) });
}

const hostileString = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', ' ', '\0', '../../etc/passwd', 'a'.repeat(5000), '=;=;', '%00'));
const inSandbox = fc.oneof(fc.constantFrom(agentSocket, missingSocket, logFile, api.caFile, api.tokenFile, dir, join(dir, 'new', 'deep', 'file')), fc.constantFrom('relative', '', '/'.repeat(2)).map((p) => (p.startsWith('/') ? join(dir, p) : p)));
const ip = fc.oneof(fc.ipV4(), fc.ipV6(), hostileString);
const prev = fc.oneof(
  { weight: 4, arbitrary: fc.constant(prevResult) },
  {
    weight: 4,
    arbitrary: fc.record(
      {
        cniVersion: mostly(fc.constantFrom('1.0.0', '0.4.0')),
        interfaces: mostly(fc.array(fc.record({ name: mostly(fc.constantFrom('eth0', 'veth1', '')), sandbox: mostly(fc.constantFrom('/run/netns/p1', '')), mac: fc.constant('x') }, { requiredKeys: [] }), { maxLength: 4 })),
        ips: mostly(fc.array(fc.record({ address: mostly(fc.oneof(ip, ip.map((a) => `${text(a)}/24`))), interface: mostly(fc.integer({ min: -1, max: 4 })) }, { requiredKeys: [] }), { maxLength: 4 })),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }) },
);
const settings = fc.record(
  {
    agentSocket: mostly(fc.constantFrom(agentSocket, missingSocket), 20).chain((v) => (v === agentSocket || v === missingSocket ? fc.constant(v) : fc.oneof(fc.constant(v), inSandbox))),
    timeoutMs: mostly(fc.constant(TIMEOUT_MS), 20).map((v) => (typeof v === 'number' && v > TIMEOUT_MS ? TIMEOUT_MS : v)),
    logFile: mostly(fc.constant(logFile), 20).chain((v) => (v === logFile ? fc.constant(v) : fc.oneof(fc.constant(null), fc.constant(42), inSandbox))),
    logLevel: mostly(fc.constantFrom('debug', 'info', 'warn', 'error'), 20),
    excludeNamespaces: mostly(fc.array(fc.oneof({ weight: 8, arbitrary: fc.constantFrom('kube-system', 'shop') }, { weight: 1, arbitrary: hostileString }), { maxLength: 3 }), 20),
    kubernetes: fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.constant({ apiServer: api.url, caFile: api.caFile, tokenFile: api.tokenFile }),
      fc.record({ apiServer: mostly(fc.constantFrom(api.url, `${api.url}/`, 'http://127.0.0.1:1', 'https://127.0.0.1:1', 'https://')), caFile: inSandbox, tokenFile: inSandbox }, { requiredKeys: [] }),
    ),
  },
  { requiredKeys: [] },
);
const attachments = fc.array(fc.record({ containerID: mostly(fc.constantFrom('c1', 'c2', '')), ifname: mostly(fc.constantFrom('eth0', '')) }, { requiredKeys: [] }), { maxLength: 3 });
const conf = fc
  .tuple(
    fc.record(
      {
        cniVersion: fc.oneof({ weight: 10, arbitrary: fc.constantFrom('1.1.0', '1.0.0', '0.4.0', '0.3.1', '0.3.0') }, { weight: 1, arbitrary: mostly(fc.constantFrom('0.2.0', '9.9.9', '')) }),
        name: mostly(fc.constant('k8s-pod-network'), 20),
        type: fc.constant('weft-cni'),
        prevResult: prev,
        'cni.dev/valid-attachments': mostly(attachments, 8),
      },
      { requiredKeys: ['cniVersion', 'name', 'type'] },
    ),
    settings,
  )
  .map(([c, s]) => JSON.stringify({ ...c, ...s }));
const stdin = fc.oneof(
  { weight: 12, arbitrary: conf },
  { weight: 1, arbitrary: fc.json() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '   ', 'null', '[]', '{}', '{"cniVersion":"1.0.0"', '\uFEFF{}', '{"__proto__":{"name":"x"},"cniVersion":"1.0.0","name":"n"}') },
);
const podArgs = fc
  .record({ ns: mostly(fc.constantFrom('shop', 'mesh', 'kube-system', 'excluded'), 6), name: mostly(fc.constantFrom('web-0', 'nobody'), 6), uid: fc.constantFrom('u1', '', 'x;y') }, { requiredKeys: [] })
  .map((a) => [`K8S_POD_NAMESPACE=${text(a.ns ?? '')}`, `K8S_POD_NAME=${text(a.name ?? '')}`, `K8S_POD_UID=${text(a.uid)}`].join(';'));
const env = fc.record(
  {
    CNI_COMMAND: mostly(fc.constantFrom('ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'), 12).map(text),
    CNI_CONTAINERID: fc.oneof({ weight: 10, arbitrary: fc.constant('c1') }, { weight: 1, arbitrary: hostileString }),
    CNI_NETNS: fc.oneof({ weight: 10, arbitrary: fc.constant('/run/netns/p1') }, { weight: 1, arbitrary: hostileString }),
    CNI_IFNAME: fc.oneof({ weight: 10, arbitrary: fc.constant('eth0') }, { weight: 1, arbitrary: hostileString }),
    CNI_ARGS: fc.oneof({ weight: 10, arbitrary: podArgs.map((a) => `IgnoreUnknown=1;${a}`) }, { weight: 1, arbitrary: hostileString }),
    CNI_PATH: fc.constant('/usr/lib/cni'),
  },
  { requiredKeys: ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'] },
);
const arbitrary: fc.Arbitrary<CniCall> = fc.record({ env: env.map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined).map(([k, v]) => [k, text(v)]))), stdin, unreadable: fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) }).map((c) => (c.unreadable ? c : { env: c.env, stdin: c.stdin }));

// Corpus files are JSON; paths in them name this run's directory as $DIR.
const encode = (c: CniCall): Buffer => Buffer.from(JSON.stringify(c, null, 1).replaceAll(dir, '$DIR'));
const decode = (b: Buffer): CniCall => JSON.parse(b.toString('utf8').replaceAll('$DIR', dir).replaceAll('$API', api.url)) as CniCall;

const ERROR_KEYS = ['cniVersion', 'code', 'details', 'msg'];
/** How the inputs ended, by command and outcome: shows the generator reaches past decoding. */
const tally = new Map<string, number>();
const count = (call: CniCall, outcome: string): void => {
  const key = `${call.env.CNI_COMMAND ?? '-'}:${outcome}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
};

async function check(call: CniCall): Promise<void> {
  const lines: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const readStdin = (): string => {
    if (call.unreadable) throw Object.assign(new Error('EBADF: bad file descriptor, read'), { code: 'EBADF' });
    return call.stdin;
  };
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${DEADLINE_MS} ms`)), DEADLINE_MS)));
  let code: number;
  try {
    code = await Promise.race([run(call.env, readStdin, (line) => lines.push(line)), deadline]);
  } finally {
    clearTimeout(timer);
  }
  if (enroller.calls.length > 1000) enroller.calls.length = 0;
  const out = lines.join('');
  if (lines.length > 1 || (out !== '' && !out.endsWith('\n'))) throw new Error(`stdout is not one line: ${JSON.stringify(out)}`);
  if (code !== 0 && code !== 1) throw new Error(`exit code ${code}`);
  if (out === '') {
    if (code !== 0) throw new Error('a failure without an error object');
    return count(call, 'ok');
  }
  const json = JSON.parse(out) as Record<string, unknown>;
  count(call, code === 0 ? 'ok' : String(json.code));
  if (code === 1) {
    if (JSON.stringify(Object.keys(json).sort()) !== JSON.stringify(ERROR_KEYS)) throw new Error(`not a spec error object: ${out}`);
    if (!Number.isInteger(json.code) || typeof json.cniVersion !== 'string' || typeof json.msg !== 'string' || typeof json.details !== 'string') throw new Error(`error object fields have the wrong types: ${out}`);
    if (json.code === CNI_ERROR.INTERNAL) throw new Error(`weft-cni failed internally: ${out}`);
    if (/\n\s+at .+:\d+:\d+/.test(String(json.details))) throw new Error(`a stack trace in details: ${out}`);
    return;
  }
  if (typeof json !== 'object' || json === null || typeof json.cniVersion !== 'string') throw new Error(`a success result without cniVersion: ${out}`);
}

t.test('hostile CNI calls get a result or a spec error object, never a crash, a hang or an internal error', async (t) => {
  const report = await runFuzz({ corpusDir: CORPUS, arbitrary, decode, encode, check });
  t.comment(`cni-call: ${JSON.stringify(report)}`);
  t.comment(`outcomes (command:exit or CNI error code): ${JSON.stringify(Object.fromEntries([...tally].sort((a, b) => b[1] - a[1]).slice(0, 30)))}`);
  t.notOk(report.failure, report.failure ? `failing input saved as ${report.failure.savedAs}: ${report.failure.error}` : 'no failure');
  t.ok(report.corpus > 0, 'the committed corpus was replayed');
  t.ok(report.generated > 0, 'and new inputs generated');
});
