// Drives a playground through the real CLI, as a user would, for the end-to-end suites.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_IMAGE } from '../../playground/images.ts';

export const REPO = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const WEFT = join(REPO, 'cli/weft.ts');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** A playground name no other run uses (names end up in interface names: 8 chars max). */
export function uniqueName(prefix = 't'): string {
  // WEFT_TEST_PREFIX: one person's (or session's) playgrounds under a prefix of their own, to find and tear down.
  prefix = process.env.WEFT_TEST_PREFIX || prefix;
  return `${prefix}${randomBytes(3).toString('hex')}`.slice(0, 8);
}

export function weft(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return sh(process.execPath, [WEFT, ...args], opts);
}

export type Runtime = 'simulated' | 'real';

/**
 * The nodes the suites run on unless a suite says otherwise: WEFT_TEST_RUNTIME=real|simulated. One
 * switch, so a suite's code is the same on both (pod() below gives every pod the same image).
 */
export const TEST_RUNTIME: Runtime = testRuntime(process.env.WEFT_TEST_RUNTIME);

function testRuntime(v: string | undefined): Runtime {
  if (v === undefined || v === '' || v === 'simulated') return 'simulated';
  if (v === 'real') return 'real';
  throw new Error(`WEFT_TEST_RUNTIME must be "real" or "simulated", not "${v}"`);
}

export class Playground {
  readonly name: string;
  readonly runtime: Runtime;
  constructor(name: string, opts: { runtime?: Runtime } = {}) {
    this.name = name;
    this.runtime = opts.runtime ?? TEST_RUNTIME;
  }

  async up(nodes: number, extra: string[] = []): Promise<Result> {
    const runtime = extra.includes('--runtime') ? [] : ['--runtime', this.runtime];
    return weft(['dev', 'up', '--name', this.name, '--nodes', String(nodes), '--detach', ...runtime, ...extra], { timeoutMs: 600_000 });
  }

  /** up(), throwing if it fails; resolves with the playground's status. */
  async start(nodes: number, extra: string[] = []): Promise<DevStatusJson> {
    const r = await this.up(nodes, extra);
    if (r.code !== 0) throw new Error(`weft dev up failed: ${r.stderr}`);
    return this.status();
  }

  async down(): Promise<Result> {
    return weft(['dev', 'down', '--name', this.name], { timeoutMs: 120_000 });
  }

  async status(): Promise<DevStatusJson> {
    const r = await weft(['dev', 'status', '-o', 'json', '--name', this.name]);
    if (r.code !== 0) throw new Error(`weft dev status failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as DevStatusJson;
  }

  kubectl(args: string[], input?: string, timeoutMs?: number): Promise<Result> {
    return weft(['dev', 'kubectl', '--name', this.name, ...args], { ...(input !== undefined ? { input } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
  }

  /** helm against the playground (its kubeconfig, and helm's config and cache under the playground's directory). */
  helm(args: string[], timeoutMs = 180_000): Promise<Result> {
    return weft(['dev', 'helm', '--name', this.name, ...args], { timeoutMs });
  }

  exec(pod: string, cmd: string[], timeoutMs = 30_000): Promise<Result> {
    return weft(['dev', 'exec', pod, '--name', this.name, '--', ...cmd], { timeoutMs });
  }

  async apply(manifest: object): Promise<void> {
    const r = await this.kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
    if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
  }

  /** The playground's directory (/run/weft-playground/<name>): nodes, PKI, state. */
  get dir(): string {
    return `/run/weft-playground/${this.name}`;
  }

  /** Everything an agent logged: its log file on simulated nodes, `kubectl logs` of its pod on real ones. */
  async agentLog(node: string): Promise<string> {
    if (this.runtime === 'simulated') return readFileSync(`${this.dir}/nodes/${node}/weft/agent.log`, 'utf8');
    const pod = (await this.weftPods('agent')).find((p) => p.spec.nodeName === node);
    if (!pod) throw new Error(`no agent pod on ${node}`);
    const r = await this.kubectl(['-n', 'weft-system', 'logs', pod.metadata.name]);
    if (r.code !== 0) throw new Error(`kubectl logs ${pod.metadata.name}: ${r.stderr}`);
    return r.stdout;
  }

  /** A pod's log (its first container's): the simulated kubelet's file, or `kubectl logs`. */
  async podLog(namespace: string, name: string): Promise<string> {
    if (this.runtime === 'simulated') return (await sh('sh', ['-c', `cat ${this.dir}/nodes/*/logs/pods/${namespace}_${name}_*/*/*.log`])).stdout;
    return (await this.kubectl(['-n', namespace, 'logs', name])).stdout;
  }

  /** The chart's pods of one component (real nodes; the simulated playground runs them as processes). */
  async weftPods(component: 'agent' | 'controller'): Promise<WeftPod[]> {
    const r = await this.kubectl(['-n', 'weft-system', 'get', 'pods', '-l', `app.kubernetes.io/name=weft-${component}`, '-o', 'json']);
    if (r.code !== 0) throw new Error(`kubectl get pods: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { items: WeftPod[] }).items;
  }

  /**
   * Real nodes: resolves once the agent DaemonSet has settled after its last change, so that a
   * `helm upgrade` now rolls without stalling. The DaemonSet controller (v1.36) moves a surge
   * node on with one delayed requeue, minReadySeconds after the new pod turns Ready; its work
   * queue keeps only the earliest pending time per DaemonSet, so that requeue is dropped if an
   * earlier one is still pending (scheduled when the previous pods turned Ready), and the roll
   * waits for the DaemonSet's next event. That earlier one fires at the latest two
   * minReadySeconds after the last agent pod turned Ready. Seen: a roll stuck for 7 minutes.
   */
  async agentDaemonSetSettled(timeoutMs = 120_000): Promise<void> {
    type Ds = { metadata: { generation: number }; spec: { minReadySeconds?: number }; status: { observedGeneration?: number; desiredNumberScheduled: number; numberAvailable?: number; updatedNumberScheduled?: number } };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.kubectl(['-n', 'weft-system', 'get', 'ds', 'weft-agent', '-o', 'json']);
      const ds = r.code === 0 ? (JSON.parse(r.stdout) as Ds) : undefined;
      const st = ds?.status;
      if (ds && st && st.observedGeneration === ds.metadata.generation && st.numberAvailable === st.desiredNumberScheduled && st.updatedNumberScheduled === st.desiredNumberScheduled) {
        const readySince = Math.max(...(await this.weftPods('agent')).map((p) => Date.parse(p.status.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '') || 0));
        // +2 s: the condition's time is cut to the second.
        const wait = readySince + (2 * (ds.spec.minReadySeconds ?? 0) + 2) * 1000 - Date.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        return;
      }
      if (Date.now() > deadline) throw new Error(`the agent DaemonSet did not settle: ${JSON.stringify(st)}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  }

  /**
   * Host PIDs of Weft's processes: the agent of `node`, or the controller(s). Simulated: the
   * supervisor's record; real: the Node processes in the pods' cgroups, as a signal from the host
   * reaches them (SIGSTOP freezes, SIGKILL is a crash the kubelet answers with a restart).
   */
  async weftPids(component: 'agent' | 'controller', node?: string): Promise<number[]> {
    if (this.runtime === 'simulated') {
      const state = JSON.parse(readFileSync(`${this.dir}/state.json`, 'utf8')) as { pids: Record<string, number> };
      const pid = state.pids[component === 'agent' ? `weft-agent/${node ?? ''}` : 'weft-controller'];
      return pid ? [pid] : [];
    }
    const pods = (await this.weftPods(component)).filter((p) => !node || p.spec.nodeName === node);
    return pods.flatMap((p) => podHostPids(p.metadata.uid, `${component}.mjs`));
  }

  /**
   * Where the ServiceAccount token a Weft component runs with can be read from the host: the
   * chart-runner's copy (simulated), or the file as the container sees it, through its process's
   * root (real: the kubelet writes projected volumes to a tmpfs inside the node's mount namespace).
   */
  async weftTokenFile(component: 'agent' | 'controller', node = 'node-1'): Promise<string> {
    if (this.runtime === 'simulated') {
      if (component === 'agent') return `${this.dir}/nodes/${node}/weft/pod/volumes/weft-credentials/token`;
      throw new Error('the simulated controller has its token in a kubeconfig: use weftToken()');
    }
    const [pid] = await this.weftPids(component, component === 'agent' ? node : undefined);
    if (!pid) throw new Error(`no ${component} process`);
    return `/proc/${pid}/root${component === 'agent' ? '/var/run/secrets/weft/token' : '/var/run/secrets/kubernetes.io/serviceaccount/token'}`;
  }

  /** The token itself (simulated: the controller's is in its kubeconfig). */
  async weftToken(component: 'agent' | 'controller', node = 'node-1'): Promise<string> {
    if (this.runtime === 'simulated' && component === 'controller') {
      const kc = JSON.parse(readFileSync(`${this.dir}/weft-controller/kubeconfig`, 'utf8')) as { users: { user: { token: string } }[] };
      return kc.users[0]?.user.token ?? '';
    }
    return readFileSync(await this.weftTokenFile(component, node), 'utf8');
  }

  async waitReady(namespace: string, selector: string[], timeoutS = 90): Promise<void> {
    const r = await this.kubectl(['-n', namespace, 'wait', '--for=condition=Ready', 'pod', ...selector, `--timeout=${timeoutS}s`], undefined, (timeoutS + 10) * 1000);
    if (r.code !== 0) {
      const pods = await this.kubectl(['-n', namespace, 'get', 'pods', '-o', 'wide']);
      throw new Error(`pods not Ready: ${r.stderr}\n${pods.stdout}`);
    }
  }
}

export interface WeftPod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { nodeName: string };
  status: { phase?: string; conditions?: { type: string; status: string; lastTransitionTime?: string }[] };
}

/** Host PIDs of a real pod's processes (its sandbox's excepted) whose command line names `cmd`. */
export function podHostPids(uid: string, cmd: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(`pod${uid}`)) continue;
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(cmd)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export interface DevStatusJson {
  name: string;
  phase: string;
  upSeconds?: number;
  kubeconfig: string;
  kubectl: string;
  apiServer: string;
  nodes: { name: string; netns: string; ip: string; podCIDR: string; ready: boolean }[];
  /** netns: the simulated kubelet's named namespace ('' on real nodes); netnsPath: what `nsenter --net=` enters, on both. */
  pods: { namespace: string; name: string; node: string; netns: string; netnsPath: string; ip: string; phase: string; meshed: boolean; identity: string }[];
  weft: { process: string; pid: number }[];
}

/**
 * A plain Pod manifest running a command, pinned to a node if given. The same manifest runs on
 * both runtimes: the image (the suites' workload image, playground/images.ts, built and loaded
 * into every real node by `weft dev up`) has python3, curl, socat, iperf3, fortio and busybox;
 * the checkout is mounted read-only at its own path, so a command naming the pinned Node and a
 * helper of tests/ (process.execPath, join(REPO, ...)) runs in the container as on the host. The
 * simulated kubelet runs the command as a host process and ignores image and volume.
 */
export function pod(namespace: string, name: string, command: string[], opts: { node?: string; labels?: Record<string, string>; port?: number; image?: string } = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: opts.labels ?? { app: name } },
    spec: {
      ...(opts.node ? { nodeName: opts.node } : {}),
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'main',
          image: opts.image ?? TEST_IMAGE,
          imagePullPolicy: 'Never',
          command,
          volumeMounts: [{ name: 'checkout', mountPath: REPO, readOnly: true }],
          ...(opts.port ? { ports: [{ containerPort: opts.port, name: 'http' }], readinessProbe: { tcpSocket: { port: opts.port }, periodSeconds: 1 } } : {}),
        },
      ],
      volumes: [{ name: 'checkout', hostPath: { path: REPO, type: 'Directory' } }],
    },
  };
}

/** Polls `fn` until it returns `want` or the time is up; returns the last value seen. */
export async function eventually(fn: () => Promise<string>, want: string, timeoutMs = 10_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let got = '';
  while (Date.now() < until) {
    got = await fn();
    if (got === want) return got;
    await new Promise((r) => setTimeout(r, 200));
  }
  return got;
}
