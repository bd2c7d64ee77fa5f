// Registering the Node (or adopting the one a previous kubelet registered) and keeping its status
// fresh: every 40 s as a heartbeat, and at once when the runtime's health changes (the pod network
// appearing or going away), as the kubelet's node status loop does.
import type { CoreV1Api, V1Node, V1NodeCondition } from '@kubernetes/client-node';
import { RetryBackoff } from './backoff.ts';
import { loadNetworkConfig } from './cni-config.ts';
import { apiErrorSummary, errorMessage, httpStatus } from './errors.ts';
import { strategicMerge } from './kube-api.ts';
import type { Logger } from '../../api/log.ts';
import { nodeLabels, nodeObject, nodeStatusPatch, type NodeIdentity, type RuntimeHealth } from './node-status.ts';

export interface NodeRegistrationOptions {
  core: CoreV1Api;
  identity: NodeIdentity;
  cniConfDir: string;
  log: Logger;
  statusIntervalMs?: number;
  healthCheckMs?: number;
}

export class NodeRegistration {
  readonly #o: NodeRegistrationOptions;
  readonly #log: Logger;
  #conditions: V1NodeCondition[] = [];
  #health: RuntimeHealth | undefined;
  #lastReport = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: NodeRegistrationOptions) {
    this.#o = opts;
    this.#log = opts.log;
  }

  /** Creates or adopts the Node and reports its first status; retries until the API server answers. */
  async register(): Promise<V1Node> {
    const backoff = new RetryBackoff(500, 10_000);
    for (;;) {
      try {
        const node = await this.#createOrAdopt();
        await this.#report(await this.#checkHealth());
        return node;
      } catch (err) {
        const delay = backoff.next();
        this.#log.warn('node registration failed; retrying', { err: apiErrorSummary(err), retryInMs: delay });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Starts the status loop. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), this.#o.healthCheckMs ?? 5000);
  }

  async #tick(): Promise<void> {
    try {
      const health = await this.#checkHealth();
      const changed = health.networkReady !== this.#health?.networkReady;
      if (changed || Date.now() - this.#lastReport >= (this.#o.statusIntervalMs ?? 40_000)) await this.#report(health);
    } catch (err) {
      this.#log.warn('node status update failed', { err: apiErrorSummary(err) });
    }
    this.#schedule();
  }

  async #createOrAdopt(): Promise<V1Node> {
    const { core, identity } = this.#o;
    try {
      const node = await core.createNode({ body: nodeObject(identity) });
      this.#log.info('node registered', { podCIDR: identity.podCIDR, ip: identity.ip });
      return node;
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
    }
    // Already registered (a previous run of this kubelet): make it ours again.
    const node = await core.readNode({ name: identity.name });
    this.#conditions = node.status?.conditions ?? [];
    const labels = nodeLabels(identity);
    const missing = Object.entries(labels).filter(([k, v]) => node.metadata?.labels?.[k] !== v);
    const podCIDR = node.spec?.podCIDR;
    if (podCIDR && podCIDR !== identity.podCIDR) {
      // spec.podCIDR is immutable once set; pods still get addresses from the CNI configuration.
      this.#log.error('the registered Node has a different podCIDR', { code: 'NODE_PODCIDR_MISMATCH', registered: podCIDR, expected: identity.podCIDR });
    }
    if (missing.length || !podCIDR) {
      await core.patchNode(
        {
          name: identity.name,
          body: {
            metadata: { labels: Object.fromEntries(missing) },
            ...(!podCIDR ? { spec: { podCIDR: identity.podCIDR, podCIDRs: [identity.podCIDR] } } : {}),
          },
        },
        strategicMerge,
      );
    }
    this.#log.info('node adopted', { uid: node.metadata?.uid });
    return node;
  }

  async #checkHealth(): Promise<RuntimeHealth> {
    try {
      await loadNetworkConfig(this.#o.cniConfDir);
      return { networkReady: true };
    } catch (err) {
      return { networkReady: false, networkMessage: errorMessage(err) };
    }
  }

  async #report(health: RuntimeHealth): Promise<void> {
    const { core, identity } = this.#o;
    const patch = nodeStatusPatch(identity, health, this.#conditions, new Date());
    const node = await core.patchNodeStatus({ name: identity.name, body: patch }, strategicMerge);
    this.#conditions = node.status?.conditions ?? [];
    this.#lastReport = Date.now();
    if (health.networkReady !== this.#health?.networkReady) {
      this.#log.info(health.networkReady ? 'node is Ready' : 'node is NotReady', health.networkMessage ? { reason: health.networkMessage } : {});
    }
    this.#health = health;
  }
}
