// One place that turns a connection's life into metrics, an access-log line and an entry in the
// admin endpoint's table of open connections. Every proxy path reports through it.
import type { Socket } from 'node:net';
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
  down: Socket;
}

export interface OpenConnection {
  id: number;
  info: Omit<OpenedInfo, 'down'>;
  peer: string;
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
    const { down, ...rest } = info;
    const peer = `${down.remoteAddress}:${down.remotePort}`;
    this.#open.set(id, { id, info: rest, peer, startedAt: Date.now() });
    const labels = peerLabels(info, info.direction === 'outbound' ? 'source' : 'destination', '-');
    tcpOpened.inc(labels);
    return {
      closed: (o) => {
        this.#open.delete(id);
        const l = o.error ? { ...labels, response_flags: 'UPSTREAM_FAILURE' } : labels;
        tcpClosed.inc(l);
        tcpReceived.inc(labels, o.received);
        tcpSent.inc(labels, o.sent);
        this.#log(info, peer, o.error ? 'error' : 'ok', o);
      },
    };
  }

  refused(o: { direction: Direction; down: Socket; reason: string; source?: Workload; sourcePrincipal?: string; target?: Address }): void {
    const info: OpenedInfo = { direction: o.direction, mode: 'passthrough', source: o.source, destination: undefined, target: o.target ?? { ip: '', port: 0 }, down: o.down };
    if (o.sourcePrincipal) info.sourcePrincipal = o.sourcePrincipal;
    tcpOpened.inc(peerLabels(info, o.direction === 'outbound' ? 'source' : 'destination', 'REFUSED'));
    this.#log(info, `${o.down.remoteAddress}:${o.down.remotePort}`, 'refused', undefined, o.reason);
  }

  #log(info: OpenedInfo, peer: string, result: string, o?: RelayOutcome, reason?: string): void {
    this.#write(
      `${JSON.stringify({
        ts: new Date().toISOString(),
        kind: 'access',
        direction: info.direction,
        mode: info.mode,
        result,
        ...(reason || o?.error ? { reason: reason ?? o?.error } : {}),
        peer,
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

function peerLabels(info: Omit<OpenedInfo, 'down'>, reporter: 'source' | 'destination', flags: string): PeerLabels {
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
