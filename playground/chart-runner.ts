// Runs the Weft release installed with `helm install` as playground processes: the controller of
// the chart's Deployment and one agent per node for the chart's DaemonSet, each with the env,
// volumes and ServiceAccount of its pod template (pod-template.ts) and a token from the
// TokenRequest API. The playground's own values (playground/values.yaml) keep the chart's real
// pods off the simulated nodes, whose kubelet runs commands and not images; this stands in for
// the kubelet and the two workload controllers for those two objects, and for nothing else.
//
// It follows the objects as the controllers would:
// - a new pod template (helm upgrade) rolls the agents one node at a time, as the chart's
//   DaemonSet does (maxSurge 1, maxUnavailable 0: the new agent beside the old, ready first, then
//   SIGTERM to the old one, which drains) and restarts the controller;
// - a deleted object (helm uninstall) stops its processes with SIGTERM and does not restart them,
//   as the garbage collector and the kubelet would; what an agent does then is its own decision;
// - an object that comes back (helm install again) starts them again.
// What it cannot show: the scheduler and the controllers' own status. `kubectl get pods -n
// weft-system` lists none of these processes; `weft dev status` does.
import { AppsV1Api, CoreV1Api, type V1DaemonSet, type V1Deployment, type V1PodTemplateSpec } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodePlan, PlaygroundPlan } from './config.ts';
import { loadClients, podApi } from './kubelet/kube-api.ts';
import { httpStatus } from './kubelet/errors.ts';
import { podProcess, SERVICE_ACCOUNT_MOUNT, type PodContext } from './pod-template.ts';
import { SupervisorError, type Replacement, type Supervisor } from './supervisor.ts';
import { AGENT_SOCKET, queryAgent } from '../agent/handover.ts';

export const CONTROLLER_DEPLOYMENT = 'weft-controller';
export const AGENT_DAEMONSET = 'weft-agent';

/** How long a new agent may take to become ready (state, certificates, listeners). */
const AGENT_READY_TIMEOUT_MS = 120_000;
const POLL_MS = 500;
/** The controller's own shutdown grace (controller/main.ts) and some. */
const CONTROLLER_STOP_MS = 15_000;

export interface ChartRunnerOptions {
  plan: PlaygroundPlan;
  sup: Supervisor;
  namespace: string;
  /** The agent's entry point, as the image ships it (the bundle). */
  agentEntry: string;
  controllerEntry: string;
  /** The weft-cni executable the agent image carries. */
  cniBinary: string;
  log: (msg: string) => void;
}

interface RunningAgent {
  /** Hash of the pod template the process was started from. */
  template: string;
  /** The agent's state directory (its agent socket tells its readiness). */
  stateDir: string;
}

export interface AgentRestart extends Replacement {
  node: string;
}

export class ChartRunner {
  readonly #o: ChartRunnerOptions;
  readonly #apps: AppsV1Api;
  readonly #core: CoreV1Api;
  readonly #lookup;
  readonly #agents = new Map<string, RunningAgent>();
  /** Hash of the pod template the running controller was started from. */
  #controller: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** One reconcile (or restart) at a time. */
  #queue: Promise<unknown> = Promise.resolve();
  #lastError = '';

  constructor(o: ChartRunnerOptions) {
    this.#o = o;
    const { kc } = loadClients(o.plan.paths.adminKubeconfig);
    this.#apps = kc.makeApiClient(AppsV1Api);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#lookup = podApi(this.#core).lookup;
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      void this.#serial(() => this.reconcile())
        .then(
          () => (this.#lastError = ''),
          (e: unknown) => {
            const msg = e instanceof Error ? e.message : String(e);
            if (msg !== this.#lastError) this.#o.log(`chart runner: ${msg}`);
            this.#lastError = msg;
          },
        )
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, POLL_MS);
        });
    };
    tick();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** `weft dev restart-agent`: replaces one node's agent with a new process of the same template. */
  restartAgent(node: string): Promise<AgentRestart> {
    return this.#serial(async () => {
      const n = this.#node(node);
      const running = this.#agents.get(n.name);
      if (!running) throw new SupervisorError('NOT_RUNNING', `no agent runs on ${node} (is the weft-agent DaemonSet installed?)`);
      const ds = await this.#get(() => this.#apps.readNamespacedDaemonSet({ namespace: this.#o.namespace, name: AGENT_DAEMONSET }));
      if (!ds?.spec?.template) throw new SupervisorError('NOT_RUNNING', `the ${AGENT_DAEMONSET} DaemonSet is gone`);
      return this.#rollAgent(n, ds.spec.template);
    });
  }

  /** One pass: makes the processes match the Deployment and the DaemonSet. */
  async reconcile(): Promise<void> {
    const { namespace } = this.#o;
    const [deployment, daemonSet] = await Promise.all([
      this.#get(() => this.#apps.readNamespacedDeployment({ namespace, name: CONTROLLER_DEPLOYMENT })),
      this.#get(() => this.#apps.readNamespacedDaemonSet({ namespace, name: AGENT_DAEMONSET })),
    ]);
    await this.#reconcileController(deployment);
    await this.#reconcileAgents(daemonSet);
  }

  async #reconcileController(d: V1Deployment | undefined): Promise<void> {
    const { sup } = this.#o;
    const template = live(d)?.spec?.template;
    if (!template) {
      if (this.#controller) {
        void sup.retire(CONTROLLER_DEPLOYMENT);
        this.#controller = undefined;
        this.#o.log(`${CONTROLLER_DEPLOYMENT}: Deployment deleted; controller stopped`);
      }
      return;
    }
    const hash = templateHash(template);
    if (this.#controller === hash) return;
    // A Deployment rolls its pods; one controller process, so: the old one stops, then the new one
    // starts (it needs the old one's ports). Agents keep their last good state meanwhile.
    if (this.#controller) {
      await Promise.race([sup.retire(CONTROLLER_DEPLOYMENT), new Promise<void>((r) => setTimeout(r, CONTROLLER_STOP_MS).unref())]);
    }
    const spec = await this.#controllerSpec(template);
    sup.start(spec);
    this.#controller = hash;
    this.#o.log(`${CONTROLLER_DEPLOYMENT}: controller started (pod template ${hash})`);
  }

  async #reconcileAgents(ds: V1DaemonSet | undefined): Promise<void> {
    const { sup, plan } = this.#o;
    const template = live(ds)?.spec?.template;
    if (!template) {
      for (const n of plan.nodes) {
        if (!this.#agents.delete(n.name)) continue;
        void sup.retire(agentName(n));
        this.#o.log(`${AGENT_DAEMONSET}: DaemonSet ${ds ? 'being deleted' : 'deleted'}; SIGTERM to the agent of ${n.name}`);
      }
      return;
    }
    const hash = templateHash(template);
    // One node at a time, each new agent ready before the next node's turn (maxSurge 1, maxUnavailable 0).
    for (const n of plan.nodes) {
      const running = this.#agents.get(n.name);
      if (running?.template === hash) continue;
      if (running && sup.running(agentName(n))) {
        const r = await this.#rollAgent(n, template);
        this.#o.log(`${AGENT_DAEMONSET}: ${n.name} rolled to pod template ${hash}: new agent pid ${r.newPid} ready in ${Math.round(r.readyMs)} ms; old pid ${r.oldPid} drains`);
        continue;
      }
      const { spec, stateDir } = await this.#agentSpec(n, template);
      sup.start(spec);
      this.#agents.set(n.name, { template: hash, stateDir });
      this.#o.log(`${AGENT_DAEMONSET}: agent started on ${n.name} (pod template ${hash})`);
    }
  }

  async #rollAgent(n: NodePlan, template: V1PodTemplateSpec): Promise<AgentRestart> {
    const { spec, stateDir } = await this.#agentSpec(n, template);
    const socket = join(stateDir, AGENT_SOCKET);
    const r = await this.#o.sup.replace(agentName(n), {
      spec,
      timeoutMs: AGENT_READY_TIMEOUT_MS,
      ready: async (pid) => {
        const status = await queryAgent(socket);
        return status.pid === pid && status.notReady === undefined;
      },
    });
    this.#agents.set(n.name, { template: templateHash(template), stateDir });
    return { node: n.name, ...r };
  }

  async #agentSpec(n: NodePlan, template: V1PodTemplateSpec): Promise<{ spec: Parameters<Supervisor['start']>[0]; stateDir: string }> {
    const { plan, namespace } = this.#o;
    const dir = join(n.dir, 'weft');
    const pod = await podProcess(template, 'agent', this.#context(`${AGENT_DAEMONSET}-${n.name}`, join(dir, 'pod'), n));
    const env: Record<string, string> = {
      ...pod.env,
      // What the image and the cluster network would give: the plugin executable the image
      // carries, and the controller's Service, which has no cluster DNS name or endpoints here.
      WEFT_CNI_BINARY: this.#o.cniBinary,
      WEFT_CONTROLLER: `https://${plan.hostIP}:15012`,
    };
    const stateDir = env.WEFT_STATE_DIR ?? join(dir, 'run');
    return {
      stateDir,
      spec: {
        name: agentName(n),
        netns: n.netns,
        cmd: process.execPath,
        args: [this.#o.agentEntry],
        env: { ...env, PATH: process.env.PATH ?? env.PATH ?? '', WEFT_NAMESPACE: env.WEFT_NAMESPACE ?? namespace },
        logFile: join(dir, 'agent.log'),
      },
    };
  }

  async #controllerSpec(template: V1PodTemplateSpec): Promise<Parameters<Supervisor['start']>[0]> {
    const { plan } = this.#o;
    const dir = join(plan.dir, 'weft-controller');
    const pod = await podProcess(template, 'controller', this.#context(`${CONTROLLER_DEPLOYMENT}-0`, dir));
    // In-cluster config reads fixed paths; the same token and CA, as a kubeconfig.
    const sa = pod.mounts.find((m) => m.mountPath === SERVICE_ACCOUNT_MOUNT);
    if (!sa) throw new Error(`the ${CONTROLLER_DEPLOYMENT} pod template does not mount its ServiceAccount token`);
    const kubeconfig = join(dir, 'kubeconfig');
    const [ca, token] = await Promise.all([readFile(join(sa.local, 'ca.crt')), readFile(join(sa.local, 'token'), 'utf8')]);
    await writeFile(kubeconfig, JSON.stringify(tokenKubeconfig(`https://${plan.hostIP}:${plan.apiServerPort}`, ca, token)), { mode: 0o600 });
    return {
      name: CONTROLLER_DEPLOYMENT,
      cmd: process.execPath,
      args: [this.#o.controllerEntry],
      env: {
        ...pod.env,
        PATH: process.env.PATH ?? '',
        KUBECONFIG: kubeconfig,
        // A pod has addresses of its own; the playground's root namespace is shared with other
        // playgrounds, so the controller binds the playground's address only.
        WEFT_LISTEN: `${plan.hostIP}:15012`,
        WEFT_HEALTH_LISTEN: `${plan.hostIP}:15014`,
      },
      logFile: join(plan.paths.logs, 'weft-controller.log'),
    };
  }

  #context(podName: string, dir: string, node?: NodePlan): PodContext {
    const { plan, namespace } = this.#o;
    return {
      namespace,
      podName,
      ...(node ? { node } : {}),
      nodeName: node?.name ?? 'control-plane',
      hostIP: plan.hostIP,
      apiServiceIP: plan.apiServiceIP,
      dir,
      lookup: this.#lookup,
      token: async (serviceAccount) => {
        // The kubelet binds a projected token to the pod; there is no pod here, so it is bound
        // to the Node (an agent's) or to nothing (the controller's). The playground does not
        // rotate tokens: it asks for two days, not the template's expirationSeconds.
        const r = await this.#core.createNamespacedServiceAccountToken({
          namespace,
          name: serviceAccount,
          body: {
            spec: {
              audiences: [],
              expirationSeconds: 48 * 3600,
              ...(node ? { boundObjectRef: { apiVersion: 'v1', kind: 'Node', name: node.name, uid: await this.#nodeUid(node.name) } } : {}),
            },
          },
        });
        return r.status?.token ?? '';
      },
    };
  }

  async #nodeUid(name: string): Promise<string> {
    return (await this.#core.readNode({ name })).metadata?.uid ?? '';
  }

  #node(name: string): NodePlan {
    const n = this.#o.plan.nodes.find((x) => x.name === name);
    if (!n) throw new SupervisorError('NO_SUCH_PROCESS', `no node ${name} (nodes: ${this.#o.plan.nodes.map((x) => x.name).join(', ')})`);
    return n;
  }

  async #get<T>(read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (e) {
      if (httpStatus(e) === 404) return undefined;
      throw e;
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }
}

export function agentName(n: NodePlan): string {
  return `weft-agent/${n.name}`;
}

/** The object unless it is being deleted (a deletionTimestamp: its pods are going). */
function live<T extends { metadata?: { deletionTimestamp?: Date | string } }>(o: T | undefined): T | undefined {
  return o?.metadata?.deletionTimestamp ? undefined : o;
}

/** Like the controllers' pod-template hash: any change to the template is a new revision. */
export function templateHash(t: V1PodTemplateSpec): string {
  return createHash('sha256').update(JSON.stringify(t)).digest('hex').slice(0, 10);
}

function tokenKubeconfig(server: string, caPem: Buffer, token: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'playground', cluster: { server, 'certificate-authority-data': caPem.toString('base64') } }],
    users: [{ name: 'pod', user: { token } }],
    contexts: [{ name: 'pod', context: { cluster: 'playground', user: 'pod' } }],
    'current-context': 'pod',
  };
}
