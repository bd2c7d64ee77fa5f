// One data-plane worker thread (docs/agent-threads.md): a DataPlane over a replica of the node's
// state and certificates, listening on the capture ports beside the other workers (SO_REUSEPORT).
// The main thread drives it by message: replication (replica.ts) and calls, each answered once.
import type { MessagePort } from 'node:worker_threads';
import { DataPlane, type DataPlaneOptions } from './data-plane.ts';
import { log } from './log.ts';
import { registry } from './metrics.ts';
import { CertificateReplica, applyReplication, type Replication } from './replica.ts';
import { StateStore } from './state/store.ts';

export type WorkerSettings = Omit<DataPlaneOptions, 'store' | 'certificates' | 'log'>;

export type WorkerCall = 'listen' | 'drain' | 'close' | 'reset' | 'connections' | 'tunnels' | 'watched' | 'metrics';

export type ToWorker = Replication | { type: 'call'; id: number; call: WorkerCall };
export type FromWorker =
  | { type: 'result'; id: number; value?: unknown; error?: string }
  /** The replica could not apply a change: it asks for the whole state again. */
  | { type: 'resync' };

export function runDataPlaneWorker(port: MessagePort, settings: WorkerSettings): void {
  const store = new StateStore();
  const certificates = new CertificateReplica();
  const plane = new DataPlane({ ...settings, store, certificates, log });
  const calls: Record<WorkerCall, () => Promise<unknown>> = {
    listen: () => plane.listen(),
    drain: () => plane.drain(),
    close: () => plane.close({ reset: false }),
    reset: () => plane.close({ reset: true }),
    connections: () => plane.openConnections(),
    tunnels: () => plane.tunnels(),
    watched: () => plane.watchedConnections(),
    // The main thread merges every worker's registry into the node's (AggregatorRegistry).
    metrics: () => registry.getMetricsAsJSON(),
  };
  port.on('message', (m: ToWorker) => {
    if (m.type !== 'call') {
      const failed = applyReplication(m, store, certificates);
      if (failed === undefined) return;
      log('error', 'data-plane worker could not apply a change from the main thread', { change: m.type, error: failed });
      // A delta that does not fit leaves the replica behind: a snapshot puts it level again.
      if (m.type === 'state') port.postMessage({ type: 'resync' } satisfies FromWorker);
      return;
    }
    const answer = (r: { value?: unknown; error?: string }): void => {
      try {
        port.postMessage({ type: 'result', id: m.id, ...r } satisfies FromWorker);
      } catch (e) {
        // An answer that cannot be cloned must still settle the call.
        port.postMessage({ type: 'result', id: m.id, error: (e as Error).message } satisfies FromWorker);
      }
    };
    calls[m.call]().then(
      (value) => answer({ value }),
      (e: unknown) => answer({ error: (e as Error).message }),
    );
  });
}
