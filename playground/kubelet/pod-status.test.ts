// Pod status as the kubelet computes it: phase (getPhase, including sidecars), the five conditions
// with their reasons and transition times, container statuses, and the comparisons that decide
// whether anything needs writing.
import t from 'tap';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ContainerSnapshot, Terminated } from './container-runner.ts';
import { apiShows, canonical, computePodStatus, statusPatch, type ContainerView, type PodStatusInput } from './pod-status.ts';

const T0 = new Date('2026-01-01T10:00:00.250Z');
const T1 = new Date('2026-01-01T10:00:05.000Z');

function term(exitCode: number, reason = exitCode === 0 ? 'Completed' : 'Error'): Terminated {
  return { exitCode, reason, startedAt: T0, finishedAt: T1, containerID: 'weft://c1' };
}

const running = (generation = 1, restartCount = 0, lastState?: Terminated): ContainerSnapshot => ({
  state: { kind: 'running', startedAt: T0, containerID: 'weft://c2' },
  lastState,
  restartCount,
  finished: false,
  generation,
});
const exited = (exitCode: number, finished = true): ContainerSnapshot => ({
  state: { kind: 'terminated', ...term(exitCode) },
  lastState: undefined,
  restartCount: 0,
  finished,
  generation: 1,
});
const backingOff = (exitCode: number, restartCount = 1): ContainerSnapshot => ({
  state: { kind: 'waiting', reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container' },
  lastState: term(exitCode),
  restartCount,
  finished: false,
  generation: 1,
});

function c(name: string, extra: Partial<V1Container> = {}): V1Container {
  return { name, image: `img/${name}`, command: ['run'], ...extra };
}

function view(spec: V1Container, snapshot?: ContainerSnapshot, ready = snapshot?.state.kind === 'running', started = ready): ContainerView {
  return { spec, ...(snapshot ? { snapshot } : { pending: { reason: 'PodInitializing' } }), ready, started };
}

function input(over: Partial<PodStatusInput> & { restartPolicy?: string; pod?: V1Pod }): PodStatusInput {
  const pod: V1Pod = over.pod ?? {
    metadata: { name: 'p', namespace: 'default', uid: 'u', generation: 1 },
    spec: { containers: [], restartPolicy: over.restartPolicy ?? 'Always' },
  };
  return {
    pod,
    hostIP: '10.200.0.11',
    podIPs: ['10.200.129.5'],
    sandboxReady: true,
    initContainers: [],
    containers: [],
    terminating: false,
    firstSeen: T0,
    now: T1,
    ...over,
  };
}

function conditions(s: ReturnType<typeof computePodStatus>): Record<string, string> {
  return Object.fromEntries(s.conditions.map((x) => [x.type, x.status + (x.reason ? `/${x.reason}` : '')]));
}

t.test('a pod whose sandbox failed is Pending, says why, and has no IP', async (t) => {
  const s = computePodStatus(
    input({
      sandboxReady: false,
      podIPs: [],
      sandboxError: { reason: 'FailedCreatePodSandBox', message: 'Failed to create pod sandbox: plugin type="ptp" failed (add): boom' },
      containers: [{ spec: c('app'), pending: { reason: 'ContainerCreating' }, ready: false, started: false }],
    }),
  );
  t.equal(s.phase, 'Pending');
  t.match(s.conditions.find((x) => x.type === 'PodReadyToStartContainers'), {
    status: 'False',
    reason: 'FailedCreatePodSandBox',
    message: /plugin type="ptp"/,
  });
  t.same(s.containerStatuses[0]?.state, { waiting: { reason: 'ContainerCreating' } });
  t.notOk('podIP' in s);
  t.equal(s.hostIP, '10.200.0.11');
});

t.test('a running, ready pod', async (t) => {
  const s = computePodStatus(input({ containers: [view(c('app'), running())] }));
  t.equal(s.phase, 'Running');
  t.same(conditions(s), { PodReadyToStartContainers: 'True', Initialized: 'True', Ready: 'True', ContainersReady: 'True', PodScheduled: 'True' });
  t.same(s.podIPs, [{ ip: '10.200.129.5' }]);
  t.equal(s.podIP, '10.200.129.5');
  t.equal(s.observedGeneration, 1);
  t.equal(s.startTime, '2026-01-01T10:00:00Z', 'times have second precision, as on the wire');
  t.match(s.containerStatuses[0], {
    name: 'app',
    ready: true,
    started: true,
    restartCount: 0,
    image: 'img/app',
    imageID: 'img/app',
    containerID: 'weft://c2',
    state: { running: { startedAt: '2026-01-01T10:00:00Z' } },
    lastState: {},
  });
});

t.test('a running container that is not ready keeps the pod Running but not Ready', async (t) => {
  const s = computePodStatus(input({ containers: [view(c('a'), running(), false, true), view(c('b'), running())] }));
  t.equal(s.phase, 'Running');
  t.match(s.conditions.find((x) => x.type === 'Ready'), { status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [a]' });
});

t.test('init containers run first: Pending and not Initialized until they succeed', async (t) => {
  const s = computePodStatus(
    input({
      initContainers: [view(c('prep'), running())],
      containers: [{ spec: c('app'), pending: { reason: 'PodInitializing' }, ready: false, started: false }],
    }),
  );
  t.equal(s.phase, 'Pending');
  t.match(s.conditions.find((x) => x.type === 'Initialized'), {
    status: 'False',
    reason: 'ContainersNotInitialized',
    message: 'containers with incomplete status: [prep]',
  });
  t.same(s.containerStatuses[0]?.state, { waiting: { reason: 'PodInitializing' } });
  t.equal(s.initContainerStatuses?.[0]?.name, 'prep');

  const done = computePodStatus(input({ initContainers: [view(c('prep'), exited(0))], containers: [view(c('app'), running())] }));
  t.equal(done.phase, 'Running');
  t.equal(conditions(done).Initialized, 'True');
});

t.test('a failed init container fails a Never pod, and keeps others Pending while it retries', async (t) => {
  const never = computePodStatus(input({ restartPolicy: 'Never', initContainers: [view(c('prep'), exited(1))], containers: [view(c('app'))] }));
  t.equal(never.phase, 'Failed');
  const retrying = computePodStatus(input({ restartPolicy: 'Always', initContainers: [view(c('prep'), backingOff(1))], containers: [view(c('app'))] }));
  t.equal(retrying.phase, 'Pending');
});

t.test('phase from finished containers follows the restart policy', async (t) => {
  const phase = (restartPolicy: string, ...snaps: ContainerSnapshot[]): string =>
    computePodStatus(input({ restartPolicy, containers: snaps.map((s, i) => view(c(`c${i}`), s)) })).phase;
  t.equal(phase('Never', exited(0), exited(0)), 'Succeeded');
  t.equal(phase('Never', exited(0), exited(2)), 'Failed');
  t.equal(phase('OnFailure', exited(0)), 'Succeeded');
  t.equal(phase('OnFailure', backingOff(1)), 'Running', 'OnFailure: restarting after a failure');
  t.equal(phase('Always', backingOff(0)), 'Running', 'Always: restarting');
  t.equal(phase('Always', exited(0), running()), 'Running');
  t.equal(phase('Never', running(), exited(1)), 'Running', 'one still runs');
});

t.test('a terminating pod ends Succeeded only if every container exited 0', async (t) => {
  const end = (...codes: number[]): string =>
    computePodStatus(input({ restartPolicy: 'Always', terminating: true, containers: codes.map((x, i) => view(c(`c${i}`), exited(x))) })).phase;
  t.equal(end(0, 0), 'Succeeded');
  t.equal(end(0, 143), 'Failed');
});

t.test('a completed pod: Ready and ContainersReady False with PodCompleted, Initialized True', async (t) => {
  const s = computePodStatus(input({ restartPolicy: 'Never', containers: [view(c('job'), exited(0))] }));
  t.equal(s.phase, 'Succeeded');
  t.same(conditions(s), {
    PodReadyToStartContainers: 'True',
    Initialized: 'True/PodCompleted',
    Ready: 'False/PodCompleted',
    ContainersReady: 'False/PodCompleted',
    PodScheduled: 'True',
  });
  t.match(s.containerStatuses[0], { ready: false, started: false, state: { terminated: { exitCode: 0, reason: 'Completed' } } });
});

t.test('sidecars: the pod waits until they have started, and ignores them once they terminated', async (t) => {
  const sidecar = c('proxy', { restartPolicy: 'Always' });
  const notStarted = computePodStatus(input({ initContainers: [view(sidecar, running(), false, false)], containers: [view(c('app'))] }));
  t.equal(notStarted.phase, 'Pending');
  t.equal(conditions(notStarted).Initialized, 'False/ContainersNotInitialized');

  const started = computePodStatus(input({ initContainers: [view(sidecar, running(), true, true)], containers: [view(c('app'), running())] }));
  t.equal(started.phase, 'Running');
  t.equal(conditions(started).Ready, 'True');

  const unreadySidecar = computePodStatus(input({ initContainers: [view(sidecar, running(), false, true)], containers: [view(c('app'), running())] }));
  t.match(unreadySidecar.conditions.find((x) => x.type === 'ContainersReady'), { status: 'False', message: 'containers with unready status: [proxy]' });

  const jobDone = computePodStatus(input({ restartPolicy: 'Never', initContainers: [view(sidecar, exited(143))], containers: [view(c('job'), exited(0))] }));
  t.equal(jobDone.phase, 'Succeeded', 'a sidecar stopped with 143 does not fail the pod');
});

t.test('readiness gates hold Ready back until their condition is True', async (t) => {
  const pod = (status?: string): V1Pod => ({
    metadata: { name: 'p', namespace: 'default', uid: 'u' },
    spec: { containers: [], readinessGates: [{ conditionType: 'weft.dev/enrolled' }] },
    status: status ? { conditions: [{ type: 'weft.dev/enrolled', status }] } : {},
  });
  const ready = (p: V1Pod) => computePodStatus(input({ pod: p, containers: [view(c('app'), running())] })).conditions.find((x) => x.type === 'Ready');
  t.match(ready(pod()), { status: 'False', reason: 'ReadinessGatesNotReady', message: /"weft.dev\/enrolled" does not exist/ });
  t.match(ready(pod('False')), { status: 'False', reason: 'ReadinessGatesNotReady' });
  t.match(ready(pod('True')), { status: 'True' });
});

t.test('a condition keeps its transition time until its status changes', async (t) => {
  const before = new Date('2025-12-31T00:00:00Z');
  const pod: V1Pod = {
    metadata: { name: 'p', namespace: 'default', uid: 'u' },
    spec: { containers: [] },
    status: { conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: before }, { type: 'PodScheduled', status: 'True', lastTransitionTime: before }] },
  };
  const s = computePodStatus(input({ pod, containers: [view(c('app'), running())] }));
  t.equal(s.conditions.find((x) => x.type === 'PodScheduled')?.lastTransitionTime, '2025-12-31T00:00:00Z', 'unchanged: kept');
  t.equal(s.conditions.find((x) => x.type === 'Ready')?.lastTransitionTime, '2026-01-01T10:00:05Z', 'flipped: now');
});

t.test('restarts show in restartCount and lastState', async (t) => {
  const s = computePodStatus(input({ containers: [view(c('app'), running(3, 2, term(137)))] }));
  t.match(s.containerStatuses[0], { restartCount: 2, lastState: { terminated: { exitCode: 137, reason: 'Error', containerID: 'weft://c1' } } });
  const waiting = computePodStatus(input({ containers: [view(c('app'), backingOff(1, 4))] }));
  t.match(waiting.containerStatuses[0], { state: { waiting: { reason: 'CrashLoopBackOff' } }, containerID: 'weft://c1', restartCount: 4 });
});

t.test('the patch removes condition reasons and messages that no longer apply', async (t) => {
  const s = computePodStatus(input({ containers: [view(c('app'), running())] }));
  const ready = (statusPatch(s).status.conditions as Record<string, unknown>[]).find((x) => x.type === 'Ready');
  t.same(ready, { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-01T10:00:05Z', reason: null, message: null });
});

t.test('comparisons: canonical JSON ignores key order; apiShows reads what the API returned', async (t) => {
  t.equal(canonical({ b: 1, a: [{ y: 2, x: 1 }] }), canonical({ a: [{ x: 1, y: 2 }], b: 1 }));
  const s = computePodStatus(input({ containers: [view(c('app'), running())] }));
  // What the client hands back: Dates, extra fields the API server added, other key order.
  const fromApi = JSON.parse(JSON.stringify(s)) as Record<string, unknown>;
  fromApi.startTime = new Date('2026-01-01T10:00:00Z');
  fromApi.qosClass = 'BestEffort';
  t.ok(apiShows(s, fromApi), 'the API already shows it');
  t.notOk(apiShows(s, { ...fromApi, phase: 'Pending' }), 'a different phase is a difference');
  t.notOk(apiShows(s, { ...fromApi, containerStatuses: [] }), 'a missing container status is a difference');
});
