// Probes against real servers: an HTTP server and a TCP listener on loopback, exec probes as real
// processes (one inside a network namespace), and the probe worker's thresholds and timing.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { createNetns, deleteNetns, netnsPath } from './netns.ts';
import { probeAction, runProbe, PROBE_USER_AGENT, type ProbeOutcome } from './probe-action.ts';
import { ProbeWorker, probeSettings } from './prober.ts';
import { ContainerProbes } from './container-probes.ts';
import { DEFAULT_PATH } from './process.ts';

const TARGET = { podIP: '127.0.0.1', netnsPath: null, env: { PATH: DEFAULT_PATH } };

async function listen(t: Test, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface HttpFixture {
  port: number;
  healthy: { value: boolean };
  seen: IncomingHttpHeaders[];
  /** Status codes served on /health, in order. */
  served: number[];
}

async function httpServer(t: Test): Promise<HttpFixture> {
  const healthy = { value: false };
  const seen: IncomingHttpHeaders[] = [];
  const served: number[] = [];
  const server = createHttpServer((req, res) => {
    seen.push(req.headers);
    if (req.url === '/ok') return res.end('fine');
    if (req.url === '/redirect') return res.writeHead(302, { Location: 'http://elsewhere.invalid/' }).end();
    if (req.url === '/fail') return res.writeHead(500).end('broken');
    if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2000);
    if (req.url === '/health') {
      served.push(healthy.value ? 200 : 503);
      return res.writeHead(healthy.value ? 200 : 503).end();
    }
    res.writeHead(404).end();
  });
  // Let a slow request not hold up closing the server.
  t.teardown(() => server.closeAllConnections());
  return { port: await listen(t, server), healthy, seen, served };
}

const container = { name: 'app', ports: [{ name: 'http', containerPort: 0 }] };

t.test('httpGet: 2xx and 3xx pass, anything else or no answer fails', async (t) => {
  const f = await httpServer(t);
  const probe = async (path: string, timeoutMs = 1000): Promise<ProbeOutcome> =>
    runProbe(probeAction({ httpGet: { path, port: f.port } }, container, TARGET), timeoutMs);

  t.match(await probe('/ok'), { ok: true, message: 'fine' });
  t.match(await probe('/redirect'), { ok: true }, 'a redirect passes and is not followed');
  t.match(await probe('/fail'), { ok: false, message: 'HTTP probe failed with statuscode: 500' });
  t.match(await probe('/missing'), { ok: false, message: 'HTTP probe failed with statuscode: 404' });

  const t0 = Date.now();
  const slow = await probe('/slow', 300);
  t.ok(Date.now() - t0 < 1000, 'the timeout cuts the attempt short');
  t.match(slow, { ok: false, message: /context deadline exceeded/ });

  const refused = await runProbe(probeAction({ httpGet: { path: '/', port: await closedPort() } }, container, TARGET), 1000);
  t.match(refused, { ok: false, message: /connect: connection refused/ });
});

t.test('httpGet sends the kubelet user agent and the configured headers, to a named port', async (t) => {
  const f = await httpServer(t);
  const named = { name: 'app', ports: [{ name: 'http', containerPort: f.port }] };
  const action = probeAction({ httpGet: { path: 'ok', port: 'http', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } }, named, TARGET);
  t.match(action, { kind: 'http', port: f.port, path: '/ok' }, 'named port resolved, path made absolute');
  t.match(await runProbe(action, 1000), { ok: true });
  t.match(f.seen.at(-1), { 'user-agent': PROBE_USER_AGENT, 'x-probe': 'yes' });

  t.match(probeAction({ httpGet: { path: '/', port: 'nope' } }, named, TARGET), { kind: 'invalid', message: 'unknown port nope' });
});

t.test('tcpSocket: a listener passes, a closed port fails', async (t) => {
  const port = await listen(t, createTcpServer((s) => s.destroy()));
  t.match(await runProbe(probeAction({ tcpSocket: { port } }, container, TARGET), 1000), { ok: true });
  const closed = await closedPort();
  t.match(await runProbe(probeAction({ tcpSocket: { port: closed } }, container, TARGET), 1000), {
    ok: false,
    message: `dial tcp 127.0.0.1:${closed}: connect: connection refused`,
  });
});

t.test("exec: exit 0 passes, anything else fails with the command's output, a hang times out", async (t) => {
  const exec = (command: string[], timeoutMs = 1000): Promise<ProbeOutcome> =>
    runProbe(probeAction({ exec: { command } }, container, TARGET), timeoutMs);
  t.match(await exec(['true']), { ok: true });
  t.match(await exec(['sh', '-c', 'echo not ready; exit 1']), { ok: false, message: 'not ready\n' });
  const t0 = Date.now();
  t.match(await exec(['sleep', '5'], 300), { ok: false, message: /timed out/ });
  t.ok(Date.now() - t0 < 2000, 'the hung command was killed at the timeout');
});

t.test("exec runs inside the pod's network namespace", async (t) => {
  const ns = `wkt-probe-${randomBytes(4).toString('hex')}`;
  t.teardown(() => deleteNetns(ns).catch(() => {}));
  await createNetns(ns);
  const inode = (await stat(netnsPath(ns))).ino;
  const action = probeAction({ exec: { command: ['sh', '-c', `test "$(readlink /proc/self/ns/net)" = "net:[${inode}]"`] } }, container, {
    ...TARGET,
    netnsPath: netnsPath(ns),
  });
  t.match(await runProbe(action, 2000), { ok: true });
});

t.test('probeSettings applies the API defaults', async (t) => {
  t.same(probeSettings({}), { initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, successThreshold: 1, failureThreshold: 3 });
  t.same(probeSettings({ initialDelaySeconds: 2, periodSeconds: 5, timeoutSeconds: 3, successThreshold: 2, failureThreshold: 4 }), {
    initialDelayMs: 2000,
    periodMs: 5000,
    timeoutMs: 3000,
    successThreshold: 2,
    failureThreshold: 4,
  });
});

function worker(t: Test, f: HttpFixture, type: 'readiness' | 'liveness' | 'startup', settings: Partial<ReturnType<typeof probeSettings>> = {}) {
  const results: boolean[] = [];
  let attempts = 0;
  const action = probeAction({ httpGet: { path: '/health', port: f.port } }, container, TARGET);
  const w = new ProbeWorker({
    type,
    settings: { initialDelayMs: 0, periodMs: 60, timeoutMs: 500, successThreshold: 1, failureThreshold: 3, ...settings },
    startedAt: Date.now(),
    attempt: (timeoutMs) => {
      attempts++;
      return runProbe(action, timeoutMs);
    },
    onResult: (ok) => results.push(ok),
  });
  t.teardown(() => w.stop());
  return { w, results, attempts: () => attempts };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('readiness changes only after successThreshold / failureThreshold attempts in a row', async (t) => {
  const f = await httpServer(t);
  const { w, results, attempts } = worker(t, f, 'readiness', { successThreshold: 2, failureThreshold: 2 });
  w.start();
  await until('three failed attempts', () => attempts() >= 3);
  t.same(results, [], 'starts not ready and stays so: no change to report');
  t.equal(w.result, false);

  // Counted on the server's side: an attempt already in flight when the health flips is not an
  // attempt against the new state.
  f.healthy.value = true;
  const flip = f.served.length;
  await until('ready', () => w.result);
  const oks = f.served.slice(flip).filter((s) => s === 200).length;
  t.ok(oks >= 2, `ready after ${oks} passing attempts (successThreshold 2)`);

  f.healthy.value = false;
  const flip2 = f.served.length;
  await until('unready', () => !w.result);
  const fails = f.served.slice(flip2).filter((s) => s === 503).length;
  t.ok(fails >= 2, `unready after ${fails} failing attempts (failureThreshold 2)`);
  t.same(results, [true, false]);
  t.notOk(w.stopped, 'readiness keeps probing');
});

t.test('liveness fails after failureThreshold failures and stops probing', async (t) => {
  const f = await httpServer(t);
  const { w, results, attempts } = worker(t, f, 'liveness', { failureThreshold: 3 });
  t.equal(w.result, true, 'alive until proven otherwise');
  w.start();
  await until('failed', () => results.length === 1);
  t.same(results, [false]);
  t.equal(attempts(), 3, 'exactly failureThreshold attempts');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(attempts(), 3, 'no attempts after the verdict');
  t.ok(w.stopped);
});

t.test('startup passes once and stops; initialDelay holds the first attempt back', async (t) => {
  const f = await httpServer(t);
  f.healthy.value = true;
  const t0 = Date.now();
  const { w, results } = worker(t, f, 'startup', { initialDelayMs: 300 });
  w.start();
  await until('started', () => results.length === 1);
  t.ok(Date.now() - t0 >= 300, `first attempt after the initial delay (${Date.now() - t0} ms)`);
  t.same(results, [true]);
  t.ok(w.stopped, 'a passed startup probe is done');
});

t.test('a container\'s probes: startup gates readiness and liveness; a liveness failure asks for a kill', async (t) => {
  const f = await httpServer(t);
  const kills: string[] = [];
  let changes = 0;
  const probes = new ContainerProbes({
    spec: {
      name: 'app',
      // Runs with the container's environment, in which the gate is closed.
      startupProbe: { exec: { command: ['sh', '-c', 'test "$GATE" = open'] }, periodSeconds: 1 },
      readinessProbe: { httpGet: { path: '/health', port: f.port }, periodSeconds: 1 },
      livenessProbe: { tcpSocket: { port: f.port }, periodSeconds: 1, failureThreshold: 1 },
    },
    target: { ...TARGET, env: { ...TARGET.env, GATE: 'closed' } },
    generation: 1,
    startedAt: Date.now(),
    onChange: () => changes++,
    onFailedAttempt: () => {},
    onKill: (type) => kills.push(type),
  });
  t.teardown(() => probes.stop());
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(probes.started, 'not started while the startup probe fails');
  t.equal(f.served.length, 0, 'readiness does not run before startup passes');
  t.same(kills, [], 'failureThreshold (3) not reached yet');
  probes.stop();

  // The same container spec with a passing startup probe.
  f.healthy.value = true;
  const passing = new ContainerProbes({
    spec: {
      name: 'app',
      startupProbe: { exec: { command: ['true'] }, periodSeconds: 1 },
      readinessProbe: { httpGet: { path: '/health', port: f.port }, periodSeconds: 1 },
      livenessProbe: { tcpSocket: { port: await closedPort() }, periodSeconds: 1, failureThreshold: 1 },
    },
    target: TARGET,
    generation: 1,
    startedAt: Date.now(),
    onChange: () => changes++,
    onFailedAttempt: () => {},
    onKill: (type) => kills.push(type),
  });
  t.teardown(() => passing.stop());
  await until('ready', () => passing.ready);
  t.ok(passing.started, 'started once the startup probe passed');
  await until('a kill request', () => kills.length === 1);
  t.same(kills, ['liveness'], 'the failing liveness probe asks for the container to be killed');
  t.ok(changes >= 2, 'each verdict is reported');
});
