// The data plane of one agent process: the three capture listeners (outbound 15001, inbound
// plaintext 15006, inbound tunnels 15008), the HBONE pool their outbound connections share, the
// policy enforcer and the connection reporter. It reads the node's state and certificates; it
// never changes them.
import type { CertificateManager } from './identity/manager.ts';
import type { L7Limits, PathOptions } from './l7/index.ts';
import type { Log } from './log.ts';
import type { MirrorLimits } from './route/mirror-limits.ts';
import { HbonePool } from './hbone/pool.ts';
import { PolicyEnforcer } from './proxy/enforcer.ts';
import { InboundProxy } from './proxy/inbound.ts';
import { InboundPlaintextProxy } from './proxy/inbound-plaintext.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS, type ProxyInputs } from './proxy/inputs.ts';
import { OutboundProxy } from './proxy/outbound.ts';
import { ConnectionReporter } from './proxy/report.ts';
import type { StateStore } from './state/store.ts';
import type { TracingSettings } from './tracing/settings.ts';
import type { RequestTracing } from './tracing/tracer.ts';
import type { PooledConnectionStatus } from './hbone/pool.ts';
import type { OpenConnection } from './proxy/report.ts';

/**
 * What the rest of the agent asks of the data plane, wherever it runs: in the main thread
 * (DataPlane) or spread over worker threads (workers.ts). Everything is asynchronous, since a
 * worker answers by message.
 */
export interface DataPath {
  listen(): Promise<void>;
  drain(): Promise<void>;
  close(o: { reset: boolean }): Promise<void>;
  openConnections(): Promise<OpenConnection[]>;
  tunnels(): Promise<PooledConnectionStatus[]>;
  /** Open connections the enforcer keeps answerable to policy changes. */
  watchedConnections(): Promise<number>;
}

export interface DataPlaneOptions {
  store: StateStore;
  node: string;
  certificates: Pick<CertificateManager, 'certificateFor' | 'secureContextFor' | 'whenReady'>;
  /** Weft's install namespace: AccessPolicies there are mesh-wide. */
  installNamespace: string;
  idleTimeoutMs: number;
  l7: { limits: L7Limits; path: PathOptions };
  /** Bounds on RequestMirror copies; route/mirror-limits.ts's defaults when absent. */
  routeMirror?: MirrorLimits;
  /** OTLP export of request spans; null or absent: tracing off. */
  tracing?: TracingSettings | null;
  log: Log;
  /** Where to listen; the capture ports on all addresses unless given (tests). */
  listenOn?: { host: string; ports: { outbound: number; inboundPlaintext: number; hbone: number } };
}

export class DataPlane implements DataPath {
  readonly report = new ConnectionReporter();
  readonly enforcer: PolicyEnforcer;
  readonly pool: HbonePool;
  readonly #outbound: OutboundProxy;
  readonly #plaintext: InboundPlaintextProxy;
  readonly #inbound: InboundProxy;
  readonly #listenOn: DataPlaneOptions['listenOn'];
  readonly #inputs: ProxyInputs;
  readonly #tracingSettings: DataPlaneOptions['tracing'];
  readonly #log: Log;
  readonly #node: string;

  constructor(o: DataPlaneOptions) {
    const { certificates } = o;
    this.#listenOn = o.listenOn;
    this.enforcer = new PolicyEnforcer({ store: o.store, installNamespace: o.installNamespace, log: o.log });
    this.pool = new HbonePool({ secureContextFor: (id) => certificates.secureContextFor(id) });
    this.#tracingSettings = o.tracing;
    this.#log = o.log;
    this.#node = o.node;
    const inputs: ProxyInputs = {
      store: o.store,
      node: o.node,
      report: this.report,
      enforcer: this.enforcer,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: o.idleTimeoutMs,
      l7: o.l7,
      ...(o.routeMirror ? { routeMirror: o.routeMirror } : {}),
    };
    this.#inputs = inputs;
    this.#inbound = new InboundProxy(inputs, certificates);
    this.#outbound = new OutboundProxy(inputs, this.pool, certificates);
    this.#plaintext = new InboundPlaintextProxy(inputs);
  }

  /** Each thread exports its own spans (one provider per data plane); undefined while tracing is off. */
  get tracing(): RequestTracing | undefined {
    return this.#inputs.tracing;
  }

  /** Binds the capture ports (SO_REUSEPORT: beside a predecessor's, listen.ts). */
  async listen(): Promise<void> {
    // OpenTelemetry is loaded only when tracing is on (~3 MiB of heap an agent without it keeps),
    // and before the first connection, so every request is traced from the start.
    if (this.#tracingSettings && !this.#inputs.tracing) {
      const { RequestTracing } = await import('./tracing/tracer.ts');
      this.#inputs.tracing = new RequestTracing(this.#tracingSettings, { node: this.#node, log: this.#log });
    }
    const on = this.#listenOn;
    if (!on) return void (await Promise.all([this.#outbound.listen(), this.#plaintext.listen(), this.#inbound.listen()]));
    await Promise.all([this.#outbound.listen(on.host, on.ports.outbound), this.#plaintext.listen(on.host, on.ports.inboundPlaintext), this.#inbound.listen(on.host, on.ports.hbone)]);
  }

  /** Stops accepting, sends GOAWAY on tunnels both ways; resolves once every connection ended. */
  async drain(): Promise<void> {
    await Promise.all([this.#outbound.drain(), this.#plaintext.drain(), this.#inbound.drain(), this.pool.drain()]);
  }

  /** Closes the pool's tunnels; with `reset` (the drain deadline passed), first resets what is still open. */
  async close(o: { reset: boolean }): Promise<void> {
    if (o.reset) await Promise.all([this.#outbound.close(), this.#plaintext.close(), this.#inbound.close()]);
    await this.pool.close({ graceMs: 0 });
    // What is queued goes out, within the export timeout.
    await this.#inputs.tracing?.shutdown();
  }

  openConnections(): Promise<OpenConnection[]> {
    return Promise.resolve(this.report.openConnections());
  }

  tunnels(): Promise<PooledConnectionStatus[]> {
    return Promise.resolve(this.pool.snapshot());
  }

  watchedConnections(): Promise<number> {
    return Promise.resolve(this.enforcer.openCount);
  }
}
