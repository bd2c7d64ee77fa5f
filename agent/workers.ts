// The data plane spread over worker threads (docs/agent-threads.md). Each worker runs a whole
// DataPlane and binds the capture ports with SO_REUSEPORT, so the kernel spreads new connections
// over them; a connection then lives on the worker that accepted it, with its own HBONE pool.
// The main thread keeps the control plane, replicates the node's state and certificates to the
// workers once per change, and answers the admin and metrics endpoints by asking every worker.
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry } from 'prom-client';
import type { DataPath } from './data-plane.ts';
import type { FromWorker, ToWorker, WorkerCall, WorkerSettings } from './data-plane-worker.ts';
import type { PooledConnectionStatus } from './hbone/pool.ts';
import type { CertificateManager } from './identity/manager.ts';
import type { Log } from './log.ts';
import type { OpenConnection } from './proxy/report.ts';
import { issuedOf, type ReplicatedStore, type Replication } from './replica.ts';

/** workerData of a data-plane worker: main.ts starts one when it finds it. */
export interface DataPlaneWorkerData {
  weftDataPlaneWorker: WorkerSettings;
}

export function isDataPlaneWorkerData(d: unknown): d is DataPlaneWorkerData {
  return typeof d === 'object' && d !== null && 'weftDataPlaneWorker' in d;
}

export interface WorkersOptions {
  count: number;
  /** The module that runs runDataPlaneWorker when it finds DataPlaneWorkerData (main.ts, or the bundle). */
  entry: URL;
  settings: WorkerSettings;
  store: ReplicatedStore;
  certificates: Pick<CertificateManager, 'certificateFor'>;
  /** The identities whose certificates the workers need (this node's meshed workloads). */
  identities: () => Iterable<string>;
  log: Log;
}

class DataPlaneWorker {
  readonly worker: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;
  #exited: Error | undefined;
  stopReplicating: () => void = () => {};

  constructor(o: WorkersOptions, index: number) {
    const workerData: DataPlaneWorkerData = { weftDataPlaneWorker: o.settings };
    this.worker = new Worker(o.entry, { workerData, name: `weft-data-plane-${index}` });
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'resync') return void this.send({ type: 'state', msg: o.store.snapshot() });
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.value);
    });
    this.worker.on('error', (e: Error) => o.log('error', 'data-plane worker failed', { worker: index, error: e.message }));
    this.worker.once('exit', (code) => {
      this.#exited = new Error(`data-plane worker ${index} exited (${code})`);
      this.stopReplicating();
      for (const p of this.#pending.values()) p.reject(this.#exited);
      this.#pending.clear();
    });
  }

  get exited(): boolean {
    return this.#exited !== undefined;
  }

  send(m: ToWorker): void {
    if (!this.#exited) this.worker.postMessage(m);
  }

  call<T>(call: WorkerCall): Promise<T> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ type: 'call', id, call } satisfies ToWorker);
    });
  }
}

export class DataPlaneWorkers implements DataPath {
  readonly #workers: DataPlaneWorker[] = [];
  readonly #o: WorkersOptions;

  constructor(o: WorkersOptions) {
    if (!(Number.isInteger(o.count) && o.count >= 1)) throw new RangeError(`worker count must be a whole number above 0, got ${o.count}`);
    this.#o = o;
    for (let i = 0; i < o.count; i++) {
      const w = new DataPlaneWorker(o, i);
      // State first (a snapshot, then every change), then the certificates held now; later
      // certificates come through certificateChanged().
      const send = (r: Replication) => w.send(r);
      w.stopReplicating = o.store.replicate(send);
      for (const identity of o.identities()) {
        const issued = issuedOf(o.certificates.certificateFor(identity));
        if (issued) send({ type: 'certificate', identity, issued });
      }
      this.#workers.push(w);
    }
  }

  get count(): number {
    return this.#workers.length;
  }

  /** The main thread's certificate for `identity` changed (issued, renewed, removed, expired). */
  certificateChanged(identity: string): void {
    const issued = issuedOf(this.#o.certificates.certificateFor(identity));
    for (const w of this.#workers) w.send({ type: 'certificate', identity, issued });
  }

  async listen(): Promise<void> {
    await this.#all('listen');
  }

  async drain(): Promise<void> {
    await this.#all('drain');
  }

  async close(o: { reset: boolean }): Promise<void> {
    await this.#all(o.reset ? 'reset' : 'close').catch(() => undefined);
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
  }

  async openConnections(): Promise<OpenConnection[]> {
    return (await this.#all<OpenConnection[]>('connections')).flat();
  }

  /** Open connections on each worker: how the kernel spread them. */
  connectionsPerWorker(): Promise<number[]> {
    return Promise.all(this.#workers.map((w) => (w.exited ? Promise.resolve(0) : w.call<OpenConnection[]>('connections').then((c) => c.length))));
  }

  async tunnels(): Promise<PooledConnectionStatus[]> {
    return (await this.#all<PooledConnectionStatus[]>('tunnels')).flat();
  }

  async watchedConnections(): Promise<number> {
    return (await this.#all<number>('watched')).reduce((a, b) => a + b, 0);
  }

  /**
   * The node's metrics: the main thread's registry merged with every worker's (counters and
   * histograms summed), in Prometheus text format.
   */
  async metrics(main: { getMetricsAsJSON(): Promise<object[]> }): Promise<{ contentType: string; text: string }> {
    const parts = await Promise.all([main.getMetricsAsJSON(), ...this.#workers.filter((w) => !w.exited).map((w) => w.call<object[]>('metrics'))]);
    const merged = AggregatorRegistry.aggregate(parts);
    return { contentType: merged.contentType, text: await merged.metrics() };
  }

  #all<T>(call: WorkerCall): Promise<T[]> {
    return Promise.all(this.#workers.filter((w) => !w.exited).map((w) => w.call<T>(call)));
  }
}
