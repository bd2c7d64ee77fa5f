// From what the kubelet knows about a pod (its sandbox, each container's runner and probes) to the
// status it writes to the API: phase, conditions and container statuses, computed the way the
// real kubelet computes them (pkg/kubelet/kubelet_pods.go getPhase, pkg/kubelet/status), as plain
// data so that it can be compared with what was written before and sent only when it changed.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ContainerSnapshot, ContainerState, Terminated } from './container-runner.ts';

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

export interface ContainerStateJSON {
  waiting?: { reason: string; message?: string };
  running?: { startedAt: string };
  terminated?: { exitCode: number; reason: string; message?: string; startedAt: string; finishedAt: string; containerID: string };
}

export interface ContainerStatusJSON {
  name: string;
  state: ContainerStateJSON;
  lastState: ContainerStateJSON;
  ready: boolean;
  started: boolean;
  restartCount: number;
  image: string;
  imageID: string;
  containerID?: string;
}

export interface PodConditionJSON {
  type: string;
  status: 'True' | 'False';
  lastTransitionTime: string;
  reason?: string;
  message?: string;
}

export interface PodStatusJSON {
  observedGeneration?: number;
  phase: PodPhase;
  conditions: PodConditionJSON[];
  hostIP: string;
  hostIPs: { ip: string }[];
  podIP?: string;
  podIPs?: { ip: string }[];
  startTime: string;
  initContainerStatuses?: ContainerStatusJSON[];
  containerStatuses: ContainerStatusJSON[];
}

/** What the pod worker knows about one container. */
export interface ContainerView {
  spec: V1Container;
  /** Absent until the container has a runner (not reached yet, or it cannot run). */
  snapshot?: ContainerSnapshot;
  /** Why there is no runner yet: shown as the waiting state. */
  pending?: { reason: string; message?: string };
  ready: boolean;
  started: boolean;
}

export interface PodStatusInput {
  pod: V1Pod;
  hostIP: string;
  podIPs: string[];
  sandboxReady: boolean;
  /** Why the sandbox could not be made, if it could not. */
  sandboxError?: { reason: string; message: string };
  initContainers: ContainerView[];
  containers: ContainerView[];
  /** The pod is being deleted or the node shut down: its containers will not restart. */
  terminating: boolean;
  /** When this kubelet first saw the pod (used if the API has no startTime yet). */
  firstSeen: Date;
  now: Date;
}

/** RFC 3339 with second precision, like metav1.Time on the wire. */
export function apiTime(d: Date | string | undefined): string {
  const date = d === undefined ? new Date() : typeof d === 'string' ? new Date(d) : d;
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function isRestartable(c: V1Container): boolean {
  return c.restartPolicy === 'Always';
}

export function computePodStatus(input: PodStatusInput): PodStatusJSON {
  const { pod } = input;
  const init = input.initContainers.map(containerStatus);
  const main = input.containers.map(containerStatus);
  const phase = podPhase(pod, input.initContainers, init, main, input.terminating);
  const conditions = podConditions(input, init, main, phase);
  const status: PodStatusJSON = {
    ...(pod.metadata?.generation !== undefined ? { observedGeneration: pod.metadata.generation } : {}),
    phase,
    conditions,
    hostIP: input.hostIP,
    hostIPs: [{ ip: input.hostIP }],
    ...(input.podIPs.length ? { podIP: input.podIPs[0], podIPs: input.podIPs.map((ip) => ({ ip })) } : {}),
    startTime: apiTime(pod.status?.startTime ?? input.firstSeen),
    ...(init.length ? { initContainerStatuses: init } : {}),
    containerStatuses: main,
  };
  return status;
}

export function containerStatus(v: ContainerView): ContainerStatusJSON {
  const s = v.snapshot;
  const state: ContainerStateJSON = s ? stateJSON(s.state) : { waiting: v.pending ?? { reason: 'ContainerCreating' } };
  const running = state.running !== undefined;
  const containerID = s?.state.kind === 'waiting' ? s.lastState?.containerID : s?.state.containerID;
  const image = v.spec.image ?? '';
  return {
    name: v.spec.name,
    state,
    lastState: s?.lastState ? { terminated: terminatedJSON(s.lastState) } : {},
    ready: running && v.ready,
    started: running && v.started,
    restartCount: s?.restartCount ?? 0,
    image,
    // There is no image: its reference is all there is to identify it.
    imageID: image,
    ...(containerID ? { containerID } : {}),
  };
}

function stateJSON(st: ContainerState): ContainerStateJSON {
  switch (st.kind) {
    case 'waiting':
      return { waiting: { reason: st.reason, ...(st.message ? { message: st.message } : {}) } };
    case 'running':
      return { running: { startedAt: apiTime(st.startedAt) } };
    case 'terminated':
      return { terminated: terminatedJSON(st) };
  }
}

function terminatedJSON(t: Terminated): NonNullable<ContainerStateJSON['terminated']> {
  return {
    exitCode: t.exitCode,
    reason: t.reason,
    ...(t.message ? { message: t.message } : {}),
    startedAt: apiTime(t.startedAt),
    finishedAt: apiTime(t.finishedAt),
    containerID: t.containerID,
  };
}

/** The kubelet's getPhase, including restartable (sidecar) init containers. */
export function podPhase(
  pod: V1Pod,
  initViews: ContainerView[],
  init: ContainerStatusJSON[],
  main: ContainerStatusJSON[],
  terminating: boolean,
): PodPhase {
  const policy = pod.spec?.restartPolicy ?? 'Always';
  let pendingRestartable = 0;
  let pendingRegular = 0;
  let failedInit = 0;
  init.forEach((s, i) => {
    const restartable = isRestartable((initViews[i] as ContainerView).spec);
    const lastTerminated = s.lastState.terminated;
    if (restartable) {
      if (s.state.running) {
        if (!s.started) pendingRestartable++;
      } else if (s.state.waiting && !lastTerminated) {
        pendingRestartable++;
      }
      return;
    }
    if (s.state.running) pendingRegular++;
    else if (s.state.terminated) {
      if (s.state.terminated.exitCode !== 0) failedInit++;
    } else if (lastTerminated) {
      if (lastTerminated.exitCode !== 0) failedInit++;
    } else pendingRegular++;
  });

  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const s of main) {
    if (s.state.running) running++;
    else if (s.state.terminated) {
      stopped++;
      if (s.state.terminated.exitCode === 0) succeeded++;
    } else if (s.lastState.terminated) stopped++;
    else waiting++;
  }

  if (failedInit > 0 && policy === 'Never') return 'Failed';
  if (pendingRegular > 0 || (pendingRestartable > 0 && !terminating)) return 'Pending';
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (terminating) return stopped === succeeded ? 'Succeeded' : 'Failed';
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (policy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

function podConditions(input: PodStatusInput, init: ContainerStatusJSON[], main: ContainerStatusJSON[], phase: PodPhase): PodConditionJSON[] {
  const prev = new Map((input.pod.status?.conditions ?? []).map((c) => [c.type, c]));
  const cond = (type: string, ok: boolean, reason?: string, message?: string): PodConditionJSON => {
    const status = ok ? 'True' : 'False';
    const before = prev.get(type);
    const lastTransitionTime =
      before && before.status === status && before.lastTransitionTime ? apiTime(before.lastTransitionTime) : apiTime(input.now);
    return { type, status, lastTransitionTime, ...(reason ? { reason } : {}), ...(message ? { message } : {}) };
  };
  const completed = phase === 'Succeeded' || phase === 'Failed';

  const incomplete = init
    .filter((s, i) => {
      const restartable = isRestartable((input.initContainers[i] as ContainerView).spec);
      return restartable ? !s.started : s.state.terminated?.exitCode !== 0;
    })
    .map((s) => s.name);
  const initialized = incomplete.length === 0 || phase === 'Succeeded';

  const unready = [
    ...init.filter((s, i) => isRestartable((input.initContainers[i] as ContainerView).spec) && !s.ready).map((s) => s.name),
    ...main.filter((s) => !s.ready).map((s) => s.name),
  ];
  const containersReady = !completed && unready.length === 0;
  const notReady: [string | undefined, string | undefined] = completed
    ? ['PodCompleted', undefined]
    : unready.length
      ? ['ContainersNotReady', `containers with unready status: [${unready.join(' ')}]`]
      : [undefined, undefined];

  const gates = readinessGateProblem(input.pod);
  const ready = containersReady && !gates;

  return [
    cond('PodReadyToStartContainers', input.sandboxReady, input.sandboxError?.reason, input.sandboxError?.message),
    cond(
      'Initialized',
      initialized,
      initialized ? (phase === 'Succeeded' ? 'PodCompleted' : undefined) : 'ContainersNotInitialized',
      initialized ? undefined : `containers with incomplete status: [${incomplete.join(' ')}]`,
    ),
    cond('Ready', ready, ...(containersReady && gates ? (['ReadinessGatesNotReady', gates] as const) : notReady)),
    cond('ContainersReady', containersReady, ...notReady),
    cond('PodScheduled', true),
  ];
}

function readinessGateProblem(pod: V1Pod): string | undefined {
  const conditions = pod.status?.conditions ?? [];
  for (const gate of pod.spec?.readinessGates ?? []) {
    const c = conditions.find((x) => x.type === gate.conditionType);
    if (!c) return `corresponding condition of pod readiness gate "${gate.conditionType}" does not exist.`;
    if (c.status !== 'True') return `the status of pod readiness gate "${gate.conditionType}" is not "True", but ${c.status}`;
  }
  return undefined;
}

/**
 * The body of the strategic merge patch for a status. Conditions merge by type field by field, so a
 * reason or message that no longer applies must be sent as null to be removed, as the kubelet's
 * computed patches do; containerStatuses are replaced whole.
 */
export function statusPatch(status: PodStatusJSON): { status: Record<string, unknown> } {
  return {
    status: {
      ...status,
      conditions: status.conditions.map((c) => ({ reason: null, message: null, ...c })),
    },
  };
}

/** Stable JSON (sorted keys), so that two statuses compare equal when they mean the same. */
export function canonical(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (v instanceof Date) return apiTime(v);
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/**
 * Whether the API already shows `ours` (every field we would write has that value there). Used
 * after a kubelet restart, when nothing has been written yet by this process.
 */
export function apiShows(ours: unknown, api: unknown): boolean {
  if (ours === undefined) return true;
  if (api instanceof Date) api = apiTime(api);
  if (typeof ours === 'string' && typeof api === 'string' && /^\d{4}-\d\d-\d\dT/.test(ours)) {
    return apiTime(ours) === apiTime(api);
  }
  if (Array.isArray(ours)) {
    return Array.isArray(api) && api.length === ours.length && ours.every((o, i) => apiShows(o, api[i]));
  }
  if (ours && typeof ours === 'object') {
    if (!api || typeof api !== 'object') return false;
    return Object.entries(ours).every(([k, v]) => apiShows(v, (api as Record<string, unknown>)[k]));
  }
  return ours === api;
}
