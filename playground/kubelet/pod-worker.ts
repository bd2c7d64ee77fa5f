// One worker per pod, level-based: each pass reads the latest pod from the API and what this
// kubelet has made for it, and makes them agree — sandbox, init containers in order, then the
// containers, their probes, and the status written back. Passes are serialized per pod, so a pass
// never races another for the same pod, and any change (a watch event, a process exit, a probe
// verdict, a timer) just asks for another pass.
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { podNetnsName } from '../config.ts';
import { RetryBackoff, type BackoffPolicy } from './backoff.ts';
import { ContainerProbes } from './container-probes.ts';
import { ContainerRunner, type RestartPolicy, type Terminated } from './container-runner.ts';
import { containerArgv, containerEnv, type EnvContext } from './env.ts';
import { KubeletError, apiErrorSummary, errorMessage, httpStatus } from './errors.ts';
import { containerFieldPath, type EventSink } from './events.ts';
import type { PodApi } from './kube-api.ts';
import type { Logger } from '../../api/log.ts';
import { deleteNetns } from './netns.ts';
import type { ProbeType } from './prober.ts';
import { adoptProcess } from './process.ts';
import { apiShows, canonical, computePodStatus, isRestartable, type ContainerView, type PodStatusJSON } from './pod-status.ts';
import type { PodRef, PodStateStore, ProcessRecord } from './pod-state-store.ts';
import { ensureSandbox, teardownSandbox, type Sandbox, type SandboxDeps } from './sandbox.ts';

export interface PodWorkerDeps {
  playground: string;
  nodeName: string;
  nodeIP: string;
  apiServiceIP: string;
  nodeCPU: number;
  nodeMemory: number;
  store: PodStateStore;
  sandbox: SandboxDeps;
  api: PodApi;
  events: EventSink;
  log: Logger;
  /** Crash-loop back-off (the kubelet's 10 s to 5 min unless a test shortens it). */
  crashLoop?: BackoffPolicy;
}

type ContainerKind = 'init' | 'sidecar' | 'regular';

interface ContainerSlot {
  spec: V1Container;
  kind: ContainerKind;
  runner?: ContainerRunner;
  env?: Record<string, string>;
  /** Why the container has no runner (NoCommand, CreateContainerConfigError). */
  pending?: { reason: string; message: string };
  retryAt?: number;
  probes?: ContainerProbes;
}

// How long a container whose configuration could not be resolved waits before the next try.
const CONFIG_RETRY_MS = 10_000;
// Grace for a pod that vanished from the API (force-deleted) or is collected after a restart.
const ORPHAN_GRACE_MS = 2000;

export class PodWorker {
  readonly uid: string;
  readonly #d: PodWorkerDeps;
  readonly #log: Logger;
  #ref: PodRef;
  #pod: V1Pod | undefined;
  #gone = false;
  readonly #firstSeen = new Date();

  #sandbox: Sandbox | undefined;
  #sandboxError: { reason: string; message: string } | undefined;
  #sandboxRetryAt = 0;
  readonly #sandboxRetry = new RetryBackoff(2000, 120_000);
  #podIPs: string[] = [];

  readonly #slots = new Map<string, ContainerSlot>();
  #processes: Record<string, ProcessRecord> | undefined;
  #terminal: 'Succeeded' | 'Failed' | undefined;
  #containersStopped = false;
  #networkReleased = false;
  #deletedFromApi = false;
  #lastWritten: { text: string; status: PodStatusJSON } | undefined;

  #dirty = false;
  #loop: Promise<void> | undefined;
  #wake: { at: number; timer: NodeJS.Timeout } | undefined;
  readonly #errorRetry = new RetryBackoff(1000, 60_000);
  #shuttingDown = false;
  #finished = false;
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(deps: PodWorkerDeps, ref: PodRef) {
    this.uid = ref.uid;
    this.#d = deps;
    this.#ref = ref;
    this.#log = deps.log.child({ pod: `${ref.namespace}/${ref.name}`, uid: ref.uid });
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** The latest pod from the API, or undefined once it is gone from the API. */
  update(pod: V1Pod | undefined): void {
    if (this.#finished) return;
    if (pod) {
      this.#pod = pod;
      this.#ref = { uid: this.uid, namespace: pod.metadata?.namespace ?? this.#ref.namespace, name: pod.metadata?.name ?? this.#ref.name };
    } else {
      this.#gone = true;
    }
    this.#kick();
  }

  /**
   * The node is going down: stop every container (within graceCapMs), release the network and
   * forget the pod locally. The API object is left alone (the control plane goes down too).
   */
  async shutdown(graceCapMs: number): Promise<void> {
    this.#shuttingDown = true;
    if (this.#wake) clearTimeout(this.#wake.timer);
    // Let a pass in progress finish (a CNI ADD, typically), but not for ever.
    const passDone = (ms: number): Promise<unknown> => Promise.race([this.#loop, new Promise((r) => setTimeout(r, ms))]);
    await passDone(graceCapMs);
    try {
      await this.#stopContainers(Math.min(this.#graceMs(), graceCapMs));
      // A pass still running may have made a runner meanwhile (never started, but stop it too).
      await passDone(1000);
      await this.#stopContainers(1000);
      await this.#killRecordedProcesses(Math.min(ORPHAN_GRACE_MS, graceCapMs));
      await teardownSandbox(this.uid, { ...this.#d.sandbox, log: this.#log }).catch((err: unknown) =>
        this.#log.warn('network release at shutdown failed', { err }),
      );
      // Even if a plugin's DEL failed, the namespace must not outlive the playground.
      await this.#deleteNetnsQuietly();
      await this.#d.store.remove(this.#ref);
    } finally {
      this.#finish();
    }
  }

  // --- the loop ------------------------------------------------------------------------------

  #kick(): void {
    if (this.#finished || this.#shuttingDown) return;
    this.#dirty = true;
    this.#loop ??= this.#run().finally(() => (this.#loop = undefined));
  }

  async #run(): Promise<void> {
    while (this.#dirty && !this.#finished && !this.#shuttingDown) {
      this.#dirty = false;
      try {
        await this.#reconcile();
        this.#errorRetry.reset();
      } catch (err) {
        const delay = this.#errorRetry.next();
        this.#log.warn('pod sync failed; retrying', { err, retryInMs: delay });
        this.#wakeIn(delay);
      }
    }
  }

  /** Asks for a pass in `ms` (keeping an earlier wake-up if one is set). */
  #wakeIn(ms: number): void {
    const at = Date.now() + ms;
    if (this.#wake && this.#wake.at <= at) return;
    if (this.#wake) clearTimeout(this.#wake.timer);
    this.#wake = {
      at,
      timer: setTimeout(() => {
        this.#wake = undefined;
        this.#kick();
      }, ms),
    };
  }

  async #reconcile(): Promise<void> {
    this.#processes ??= await this.#d.store.readProcesses(this.uid);
    const pod = this.#pod;
    if (this.#gone || !pod) return this.#cleanUpOrphan();
    if (pod.metadata?.deletionTimestamp) return this.#terminate(pod);

    // A pod that already ended (before a kubelet restart, say) never runs again.
    const apiPhase = pod.status?.phase;
    if (!this.#terminal && this.#slots.size === 0 && (apiPhase === 'Succeeded' || apiPhase === 'Failed')) this.#terminal = apiPhase;
    if (this.#terminal) return this.#settleTerminal(pod);

    if (await this.#ensureSandbox(pod)) {
      const initialized = await this.#syncInitContainers(pod);
      if (initialized) await this.#syncContainers(pod);
      for (const slot of this.#slots.values()) this.#syncProbes(slot, pod);
    }
    const status = await this.#writeStatus(pod, false);
    if (status.phase === 'Succeeded' || status.phase === 'Failed') {
      this.#terminal = status.phase;
      this.#log.info('pod finished', { phase: status.phase });
      await this.#settleTerminal(pod);
    }
  }

  // --- sandbox -------------------------------------------------------------------------------

  async #ensureSandbox(pod: V1Pod): Promise<boolean> {
    if (this.#sandbox) return true;
    if (Date.now() < this.#sandboxRetryAt) return false;
    try {
      this.#sandbox = await ensureSandbox(
        {
          ...this.#ref,
          hostNetwork: pod.spec?.hostNetwork === true,
          netns: podNetnsName(this.#d.playground, this.uid),
        },
        { ...this.#d.sandbox, log: this.#log },
      );
      this.#podIPs = this.#sandbox.podIPs;
      this.#sandboxError = undefined;
      this.#sandboxRetry.reset();
      return true;
    } catch (err) {
      const message = `Failed to create pod sandbox: ${errorMessage(err)}`;
      const delay = this.#sandboxRetry.next();
      this.#sandboxError = { reason: 'FailedCreatePodSandBox', message };
      this.#sandboxRetryAt = Date.now() + delay;
      this.#wakeIn(delay);
      this.#log.warn('pod sandbox creation failed', { err, retryInMs: delay });
      this.#d.events.pod(this.#ref, 'Warning', 'FailedCreatePodSandBox', message);
      return false;
    }
  }

  // --- containers ----------------------------------------------------------------------------

  /** Runs init containers in order; true once all have succeeded (and sidecars have started). */
  async #syncInitContainers(pod: V1Pod): Promise<boolean> {
    for (const spec of pod.spec?.initContainers ?? []) {
      const slot = this.#slot(spec, isRestartable(spec) ? 'sidecar' : 'init');
      const runner = await this.#ensureRunner(slot, pod);
      if (!runner) return false;
      const s = runner.snapshot();
      if (slot.kind === 'sidecar') {
        // The next init container starts once the sidecar has started (its startup probe passed).
        this.#syncProbes(slot, pod);
        if (!(s.state.kind === 'running' && slot.probes?.started)) return false;
        continue;
      }
      if (s.state.kind === 'terminated' && s.state.exitCode === 0) continue;
      return false;
    }
    return true;
  }

  async #syncContainers(pod: V1Pod): Promise<void> {
    for (const spec of pod.spec?.containers ?? []) await this.#ensureRunner(this.#slot(spec, 'regular'), pod);
  }

  #slot(spec: V1Container, kind: ContainerKind): ContainerSlot {
    let slot = this.#slots.get(spec.name);
    if (!slot) {
      slot = { spec, kind };
      this.#slots.set(spec.name, slot);
    }
    return slot;
  }

  async #ensureRunner(slot: ContainerSlot, pod: V1Pod): Promise<ContainerRunner | undefined> {
    if (slot.runner) return slot.runner;
    const { spec } = slot;
    const fieldPath = this.#fieldPath(slot);
    if (!spec.command?.length) {
      if (!slot.pending) {
        slot.pending = {
          reason: 'NoCommand',
          message:
            `container "${spec.name}" has no command: the playground kubelet runs the command and args of a ` +
            `container as a process and cannot run image "${spec.image ?? ''}" (images are informational); set command in the pod spec`,
        };
        this.#d.events.pod(this.#ref, 'Warning', 'Failed', `Error: ${slot.pending.message}`, fieldPath);
        this.#log.warn('container has no command', { container: spec.name });
      }
      return undefined;
    }
    if (slot.retryAt && Date.now() < slot.retryAt) return undefined;

    let env: Record<string, string>;
    try {
      env = await containerEnv(spec, this.#envContext(pod));
    } catch (err) {
      if (!(err instanceof KubeletError) || err.code !== 'CONTAINER_CONFIG') throw err;
      slot.pending = { reason: 'CreateContainerConfigError', message: err.message };
      slot.retryAt = Date.now() + CONFIG_RETRY_MS;
      this.#wakeIn(CONFIG_RETRY_MS);
      this.#d.events.pod(this.#ref, 'Warning', 'Failed', `Error: ${err.message}`, fieldPath);
      return undefined;
    }
    slot.pending = undefined;
    slot.env = env;

    const podPolicy = (pod.spec?.restartPolicy ?? 'Always') as RestartPolicy;
    const restartPolicy: RestartPolicy =
      slot.kind === 'sidecar' ? 'Always' : slot.kind === 'init' ? (podPolicy === 'Never' ? 'Never' : 'OnFailure') : podPolicy;
    const previous = previousRun(pod, slot);
    const runner = new ContainerRunner({
      name: spec.name,
      podLabel: `${this.#ref.name}_${this.#ref.namespace}(${this.uid})`,
      restartPolicy,
      launch: {
        argv: containerArgv(spec, env),
        env,
        netnsPath: this.#sandbox?.netnsPath ?? null,
        ...(spec.workingDir ? { cwd: spec.workingDir } : {}),
      },
      logPath: (n) => this.#d.store.containerLogPath(this.#ref, spec.name, n),
      ...(this.#d.crashLoop ? { backoff: this.#d.crashLoop } : {}),
      initialRestartCount: previous.restartCount,
      ...(this.#processes?.[spec.name] ? { adopt: this.#processes[spec.name] } : {}),
      ...(previous.exit ? { previousExit: previous.exit } : {}),
      onChange: () => this.#kick(),
      onStarted: (rec) => this.#recordProcess(spec.name, rec),
      onEvent: (type, reason, message) => this.#d.events.pod(this.#ref, type, reason, message, fieldPath),
      log: this.#log,
    });
    slot.runner = runner;
    // Shutdown stops the runners it can see; one made during shutdown must not start at all.
    if (!this.#shuttingDown) runner.start();
    return runner;
  }

  #recordProcess(name: string, rec: ProcessRecord): void {
    this.#processes = { ...this.#processes, [name]: rec };
    this.#d.store.writeProcesses(this.uid, this.#processes).catch((err: unknown) => this.#log.warn('could not record process', { err }));
  }

  #envContext(pod: V1Pod): EnvContext {
    return {
      pod,
      podIPs: this.#podIPs,
      hostIP: this.#d.nodeIP,
      nodeName: this.#d.nodeName,
      apiServiceIP: this.#d.apiServiceIP,
      nodeCPU: this.#d.nodeCPU,
      nodeMemory: this.#d.nodeMemory,
      lookup: this.#d.api.lookup,
      services: this.#d.api.services,
    };
  }

  #fieldPath(slot: ContainerSlot): string {
    return containerFieldPath(slot.kind === 'regular' ? 'regular' : 'init', slot.spec.name);
  }

  // --- probes --------------------------------------------------------------------------------

  /** Keeps the container's probes in step with its current process. */
  #syncProbes(slot: ContainerSlot, pod: V1Pod): void {
    const s = slot.runner?.snapshot();
    if (!s || s.state.kind !== 'running') {
      slot.probes?.stop();
      slot.probes = undefined;
      return;
    }
    if (slot.probes?.generation === s.generation) return;
    slot.probes?.stop();
    const fieldPath = this.#fieldPath(slot);
    slot.probes = new ContainerProbes({
      spec: slot.spec,
      target: { podIP: this.#podIPs[0] ?? this.#d.nodeIP, netnsPath: this.#sandbox?.netnsPath ?? null, env: slot.env ?? {} },
      generation: s.generation,
      startedAt: s.state.startedAt.getTime(),
      onChange: () => this.#kick(),
      onFailedAttempt: (type, o) =>
        this.#d.events.pod(this.#ref, 'Warning', 'Unhealthy', `${capitalize(type)} probe failed: ${o.message.trim()}`, fieldPath),
      onKill: (type, probe) => this.#killForProbe(slot, type, probe, pod),
    });
  }

  #killForProbe(slot: ContainerSlot, type: ProbeType, probe: V1Probe, pod: V1Pod): void {
    const fieldPath = this.#fieldPath(slot);
    this.#d.events.pod(this.#ref, 'Normal', 'Killing', `Container ${slot.spec.name} failed ${type} probe, will be restarted`, fieldPath);
    const graceMs = (probe.terminationGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
    slot.runner?.kill(graceMs).catch((err: unknown) => this.#log.warn('could not kill container', { container: slot.spec.name, err }));
  }

  // --- status --------------------------------------------------------------------------------

  #views(pod: V1Pod, kind: 'init' | 'regular'): ContainerView[] {
    const specs = (kind === 'init' ? pod.spec?.initContainers : pod.spec?.containers) ?? [];
    const hasInit = (pod.spec?.initContainers?.length ?? 0) > 0;
    return specs.map((spec) => {
      const slot = this.#slots.get(spec.name);
      const s = slot?.runner?.snapshot();
      const running = s?.state.kind === 'running';
      const started = running && (slot?.probes?.started ?? false);
      const ready = running && (slot?.probes?.ready ?? false);
      const pending =
        slot?.pending ?? (kind === 'init' || hasInit ? { reason: 'PodInitializing' } : { reason: 'ContainerCreating' });
      return { spec, ...(s ? { snapshot: s } : { pending }), ready, started };
    });
  }

  async #writeStatus(pod: V1Pod, terminating: boolean): Promise<PodStatusJSON> {
    const status = computePodStatus({
      pod: this.#lastWritten ? { ...pod, status: { ...pod.status, conditions: this.#mergedConditions(pod) } } : pod,
      hostIP: this.#d.nodeIP,
      podIPs: this.#podIPs,
      sandboxReady: this.#sandbox !== undefined && !this.#networkReleased,
      ...(this.#sandboxError ? { sandboxError: this.#sandboxError } : {}),
      initContainers: this.#views(pod, 'init'),
      containers: this.#views(pod, 'regular'),
      terminating,
      firstSeen: this.#firstSeen,
      now: new Date(),
    });
    if (this.#terminal) status.phase = this.#terminal;
    const text = canonical(status);
    const unchanged = this.#lastWritten ? this.#lastWritten.text === text : apiShows(status, pod.status);
    if (unchanged) {
      this.#lastWritten ??= { text, status };
      return status;
    }
    try {
      await this.#d.api.patchStatus(this.#ref, status);
      this.#lastWritten = { text, status };
      this.#log.debug('status written', { phase: status.phase });
    } catch (err) {
      if (httpStatus(err) === 404) return status; // deleted meanwhile: the watch will say so
      this.#log.warn('status update failed', { err: apiErrorSummary(err) });
      this.#wakeIn(this.#errorRetry.next());
    }
    return status;
  }

  /**
   * Conditions as last written by us, plus any others the API holds (readiness gates): the watch
   * may lag behind our own write, and a transition time must not move because of that lag.
   */
  #mergedConditions(pod: V1Pod): NonNullable<NonNullable<V1Pod['status']>['conditions']> {
    const ours = (this.#lastWritten?.status.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: new Date(c.lastTransitionTime) }));
    const oursTypes = new Set(ours.map((c) => c.type));
    return [...ours, ...(pod.status?.conditions ?? []).filter((c) => !oursTypes.has(c.type))];
  }

  // --- endings -------------------------------------------------------------------------------

  /** A pod that reached Succeeded or Failed: stop what still runs (sidecars), release the network. */
  async #settleTerminal(pod: V1Pod): Promise<void> {
    if (!this.#containersStopped) {
      await this.#stopContainers(this.#graceMs(pod));
      this.#containersStopped = true;
    }
    if (!this.#networkReleased) {
      await this.#releaseNetwork();
      this.#networkReleased = true;
      if (this.#slots.size > 0) await this.#writeStatus(pod, true);
    }
  }

  /** The pod was deleted gracefully: stop, release, forget, and remove the API object. */
  async #terminate(pod: V1Pod): Promise<void> {
    if (!this.#containersStopped) {
      const graceMs = this.#graceMs(pod);
      this.#log.info('stopping pod', { graceMs });
      await this.#stopContainers(graceMs, true);
      this.#containersStopped = true;
      if (this.#slots.size > 0) await this.#writeStatus(pod, true);
    }
    await this.#killRecordedProcesses(ORPHAN_GRACE_MS);
    if (!this.#networkReleased) {
      await this.#releaseNetwork();
      this.#networkReleased = true;
    }
    await this.#d.store.remove(this.#ref);
    if (!this.#deletedFromApi) {
      await this.#d.api.deletePod(this.#ref);
      this.#deletedFromApi = true;
      this.#log.info('pod deleted');
    }
    this.#finish();
  }

  /** The pod is gone from the API without us (force delete), or was left over from a previous run. */
  async #cleanUpOrphan(): Promise<void> {
    this.#log.info('cleaning up a pod that is no longer in the API');
    await this.#stopContainers(ORPHAN_GRACE_MS);
    await this.#killRecordedProcesses(ORPHAN_GRACE_MS);
    await this.#releaseNetwork();
    await this.#d.store.remove(this.#ref);
    this.#finish();
  }

  async #releaseNetwork(): Promise<void> {
    try {
      await teardownSandbox(this.uid, { ...this.#d.sandbox, log: this.#log });
    } catch (err) {
      // Retried by the loop; like the kubelet, the pod stays until its network is released.
      this.#d.events.pod(this.#ref, 'Warning', 'FailedKillPod', `error killing pod: failed to "KillPodSandbox" for "${this.uid}": ${errorMessage(err)}`);
      throw err;
    }
  }

  /** Stops every container: regular ones first, then init containers and sidecars with what remains. */
  async #stopContainers(graceMs: number, announce = false): Promise<void> {
    for (const slot of this.#slots.values()) slot.probes?.stop();
    const deadline = Date.now() + graceMs;
    const stop = (kinds: ContainerKind[], ms: number): Promise<void[]> =>
      Promise.all(
        [...this.#slots.values()]
          .filter((s) => s.runner && kinds.includes(s.kind))
          .map((s) => {
            if (announce && s.runner?.snapshot().state.kind === 'running') {
              this.#d.events.pod(this.#ref, 'Normal', 'Killing', `Stopping container ${s.spec.name}`, this.#fieldPath(s));
            }
            return (s.runner as ContainerRunner).stop(ms);
          }),
      );
    await stop(['regular'], graceMs);
    // Sidecars outlive the containers they serve, with the rest of the grace period (at least 1 s).
    await stop(['sidecar', 'init'], Math.max(1000, deadline - Date.now()));
  }

  /** Processes an earlier kubelet started that no runner has adopted. */
  async #killRecordedProcesses(graceMs: number): Promise<void> {
    const recs = this.#processes ?? (await this.#d.store.readProcesses(this.uid));
    await Promise.all(
      Object.entries(recs).map(async ([name, rec]) => {
        if (this.#slots.get(name)?.runner) return;
        const proc = adoptProcess(rec.pid, rec.startTicks, new Date(rec.startedAt), 100);
        if (!proc) return;
        proc.signal('SIGTERM');
        const escalate = setTimeout(() => proc.signal('SIGKILL'), graceMs);
        await proc.exited;
        clearTimeout(escalate);
      }),
    );
  }

  async #deleteNetnsQuietly(): Promise<void> {
    const rec = await this.#d.store.readPod(this.uid).catch(() => undefined);
    if (!rec?.netns) return;
    await deleteNetns(rec.netns).catch((err: unknown) => this.#log.warn('could not delete pod netns', { err }));
  }

  #graceMs(pod: V1Pod | undefined = this.#pod): number {
    const s = pod?.metadata?.deletionGracePeriodSeconds ?? pod?.spec?.terminationGracePeriodSeconds ?? 30;
    return s * 1000;
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#wake) clearTimeout(this.#wake.timer);
    this.#resolveDone();
  }
}

function capitalize(s: string): string {
  return `${s[0]?.toUpperCase() ?? ''}${s.slice(1)}`;
}

/**
 * What the API says about a container's earlier runs (after a kubelet restart): its restart count
 * and, if it is not running any more, how it ended. A container the API shows running but whose
 * process is gone ended while no kubelet watched: its exit status is unknown.
 */
function previousRun(pod: V1Pod, slot: ContainerSlot): { restartCount: number; exit?: Terminated } {
  const list = slot.kind === 'regular' ? pod.status?.containerStatuses : pod.status?.initContainerStatuses;
  const st = list?.find((c) => c.name === slot.spec.name);
  if (!st) return { restartCount: 0 };
  const toTerminated = (t: NonNullable<NonNullable<typeof st.state>['terminated']>): Terminated => ({
    exitCode: t.exitCode,
    reason: t.reason ?? (t.exitCode === 0 ? 'Completed' : 'Error'),
    ...(t.message ? { message: t.message } : {}),
    startedAt: new Date(t.startedAt ?? Date.now()),
    finishedAt: new Date(t.finishedAt ?? Date.now()),
    containerID: t.containerID ?? st.containerID ?? '',
  });
  if (st.state?.terminated) return { restartCount: st.restartCount, exit: toTerminated(st.state.terminated) };
  if (st.state?.running) {
    return {
      restartCount: st.restartCount,
      exit: {
        exitCode: 255,
        reason: 'Unknown',
        message: 'the container was running when the kubelet restarted and its process is gone',
        startedAt: new Date(st.state.running.startedAt ?? Date.now()),
        finishedAt: new Date(),
        containerID: st.containerID ?? '',
      },
    };
  }
  if (st.lastState?.terminated) return { restartCount: st.restartCount, exit: toTerminated(st.lastState.terminated) };
  return { restartCount: st.restartCount };
}
