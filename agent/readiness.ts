// When an agent process can serve the node. Ready: it serves any new connection at once — it has
// the node's state, a certificate for each meshed workload here (an inbound tunnel to one it has
// none for would be refused), and its listeners. canServe() is all but the last: beside a
// predecessor it decides when to bind (handover.ts).
import type { CertificateManager } from './identity/manager.ts';
import type { Log } from './log.ts';
import type { StateStore } from './state/store.ts';

export class Readiness {
  readonly #store: StateStore;
  readonly #node: string;
  readonly #certificates: Pick<CertificateManager, 'certificateFor'>;
  draining = false;
  serving = false;
  /** Set at the stop, before acting on it: what an older process of the node waits for (drain.ts). */
  stopDecision: { uninstall: boolean; reason: string } | undefined;

  constructor(o: { store: StateStore; node: string; certificates: Pick<CertificateManager, 'certificateFor'> }) {
    this.#store = o.store;
    this.#node = o.node;
    this.#certificates = o.certificates;
  }

  /** The identities of this node's meshed workloads: those it must hold certificates for. */
  localIdentities(): Set<string> {
    return new Set(this.#store.workloadsOnNode(this.#node).filter((w) => w.meshed).map((w) => w.identity));
  }

  /** Why this process could not serve new connections yet, listeners aside. */
  canServe(): string | undefined {
    if (this.draining) return 'draining';
    if (!this.#store.epoch) return 'no state from the controller yet';
    const missing = [...this.localIdentities()].filter((id) => !this.#certificates.certificateFor(id)).length;
    if (missing > 0) return `no certificate yet for ${missing} local workload identit${missing === 1 ? 'y' : 'ies'}`;
    return undefined;
  }

  /** Why this process is not ready; undefined when it is. */
  notReady(): string | undefined {
    return this.canServe() ?? (this.serving ? undefined : 'capture listeners not bound yet');
  }

  /** Resolves true once canServe() clears, false if the process starts draining first. */
  async untilAble(log: Log): Promise<boolean> {
    let last: string | undefined;
    for (;;) {
      if (this.draining) return false;
      const why = this.canServe();
      if (why === undefined) return true;
      if (why !== last) log('info', 'not ready to take over the node yet', { reason: why });
      last = why;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
