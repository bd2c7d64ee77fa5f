// One place that turns a connection's life into metrics, an access-log line and an entry in the
// admin endpoint's table of open connections. Every proxy path reports through it.
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { Address } from '../native/sockopt.ts';
import { tcpClosed, tcpOpened, tcpReceived, tcpSent, type PeerLabels } from '../metrics.ts';
import type { RelayOutcome } from './relay.ts';

export type Direction = 'outbound' | 'inbound' | 'inbound-plaintext';
export type Mode = 'tunnel' | 'local' | 'passthrough' | 'plaintext';

export interface OpenedInfo {
  direction: Direction;
  mode: Mode;
  source: Workload | undefined;
  /** The SPIFFE ID the peer proved (inbound tunnels), when it differs from the source workload's. */
  sourcePrincipal?: string;
  destination: Workload | undefined;
  target: Address;
  service?: Service | undefined;
  /** The far end of the accepted connection, ip:port. */
  peer: string;
}

export interface OpenConnection {
  id: number;
  info: OpenedInfo;
  startedAt: number;
}

export interface ConnectionHandle {
  closed(o: RelayOutcome): void;
}

export class ConnectionReporter {
  readonly #open = new Map<number, OpenConnection>();
  #next = 1;
  readonly #write: (line: string) => void;

  constructor(write: (line: string) => void = (l) => process.stdout.write(l)) {
    this.#write = write;
  }

  openConnections(): OpenConnection[] {
    return [...this.#open.values()];
  }

  opened(info: OpenedInfo): ConnectionHandle {
    const id = this.#next++;
    this.#open.set(id, { id, info, startedAt: Date.now() });
    const labels = peerLabels(info, info.direction === 'outbound' ? 'source' : 'destination', '-');
    tcpOpened.inc(labels);
    return {
      closed: (o) => {
        this.#open.delete(id);
        const l = o.error ? { ...labels, response_flags: 'UPSTREAM_FAILURE' } : labels;
        tcpClosed.inc(l);
        tcpReceived.inc(labels, o.received);
        tcpSent.inc(labels, o.sent);
        this.#log(info, o.error ? 'error' : 'ok', o);
      },
    };
  }

  refused(o: { direction: Direction; peer: string; reason: string; source?: Workload | undefined; sourcePrincipal?: string; destination?: Workload | undefined; target?: Address }): void {
    const info: OpenedInfo = { direction: o.direction, mode: 'passthrough', source: o.source, destination: o.destination, target: o.target ?? { ip: '', port: 0 }, peer: o.peer };
    if (o.sourcePrincipal) info.sourcePrincipal = o.sourcePrincipal;
    tcpOpened.inc(peerLabels(info, o.direction === 'outbound' ? 'source' : 'destination', 'REFUSED'));
    this.#log(info, 'refused', undefined, o.reason);
  }

  #log(info: OpenedInfo, result: string, o?: RelayOutcome, reason?: string): void {
    this.#write(
      `${JSON.stringify({
        ts: new Date().toISOString(),
        kind: 'access',
        direction: info.direction,
        mode: info.mode,
        result,
        ...(reason || o?.error ? { reason: reason ?? o?.error } : {}),
        peer: info.peer,
        source: info.source ? info.source.key : undefined,
        source_identity: info.sourcePrincipal ?? info.source?.identity,
        destination: info.destination?.key,
        destination_identity: info.destination?.identity,
        destination_service: info.service?.key,
        target: `${info.target.ip}:${info.target.port}`,
        bytes_received: o?.received ?? 0,
        bytes_sent: o?.sent ?? 0,
        duration_ms: o ? Math.round(o.durationMs * 1000) / 1000 : 0,
      })}\n`,
    );
  }
}

function peerLabels(info: OpenedInfo, reporter: 'source' | 'destination', flags: string): PeerLabels {
  const s = info.source;
  const d = info.destination;
  return {
    reporter,
    source_workload: s ? workloadName(s) : 'unknown',
    source_workload_namespace: s?.namespace ?? 'unknown',
    source_principal: info.sourcePrincipal ?? s?.identity ?? 'unknown',
    destination_workload: d ? workloadName(d) : 'unknown',
    destination_workload_namespace: d?.namespace ?? 'unknown',
    destination_principal: d?.meshed ? d.identity : 'unknown',
    destination_service: info.service?.key ?? 'unknown',
    response_flags: flags,
  };
}

/** The workload a pod belongs to: its app label, else its name without the ReplicaSet suffixes. */
export function workloadName(w: Workload): string {
  return w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '');
}
