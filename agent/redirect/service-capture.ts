// Keeps svc4 (rules.ts) equal to the Service addresses that a meshed pod of this node backs. The
// node's connections to such an address must reach the agent: kube-proxy translates them to a pod
// address only after the agent's chains ran, and from then on no nat rule sees them again, so
// without this a node process reaches a meshed pod through its Service past STRICT and policy.
// Only these Services: the node's other Service traffic (DNS, the API server) never depends on
// the agent. The inbound plaintext proxy picks the endpoint, as kube-proxy would have.
import type { StateStore } from '../state/store.ts';
import type { Redirector } from './nftables.ts';
import { serviceElements, type ServiceAddress } from './rules.ts';

/** ClusterIP (IPv4) . TCP port of every Service with an endpoint that is a meshed pod of `node`. */
export function localServiceAddresses(store: StateStore, node: string): ServiceAddress[] {
  const out: ServiceAddress[] = [];
  for (const svc of store.services()) {
    const backed = svc.endpoints.some((e) => {
      const w = store.workloadByIP(e.ip);
      return w !== undefined && w.node === node && w.meshed;
    });
    if (!backed) continue;
    for (const ip of svc.clusterIPs) {
      if (ip.includes(':')) continue; // IPv6 is closed, not captured (rules.ts)
      for (const p of svc.ports) if (p.protocol === 'TCP') out.push({ ip, port: p.port });
    }
  }
  return out;
}

export interface ServiceCaptureOptions {
  store: StateStore;
  node: string;
  redirector: Redirector;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export class ServiceCapture {
  readonly #o: ServiceCaptureOptions;
  #applied = '';
  #queue: Promise<void> = Promise.resolve();
  #off: (() => void) | undefined;

  constructor(o: ServiceCaptureOptions) {
    this.#o = o;
  }

  /** Follows the store from now on; resolves once the current addresses are in place. */
  start(): Promise<void> {
    this.#off = this.#o.store.onChange(() => void this.update());
    return this.update();
  }

  /** A draining agent stops: the node's rules are its successor's to change. */
  stop(): void {
    this.#off?.();
    this.#off = undefined;
  }

  /** Applies the addresses the store implies, if they changed; serialised, so the last one wins. */
  update(): Promise<void> {
    this.#queue = this.#queue.then(async () => {
      const services = localServiceAddresses(this.#o.store, this.#o.node);
      const key = serviceElements(services).join(',');
      if (key === this.#applied) return;
      try {
        await this.#o.redirector.captureServices(services);
        this.#applied = key;
        this.#o.log('info', 'Service addresses captured from the node', { services: key === '' ? 0 : key.split(',').length });
      } catch (e) {
        this.#o.log('error', 'updating the captured Service addresses failed', { error: (e as Error).message });
      }
    });
    return this.#queue;
  }
}
