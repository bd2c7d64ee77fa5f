// One place that turns a connection's life into metrics, an access-log line and an entry in the
// admin endpoint's table of open connections. Every proxy path reports through it.
import type { Service, Workload } from '../../api/agent-sync.ts';
import type { Address } from '../native/sockopt.ts';
import { requestDuration, requests, tcpClosed, tcpOpened, tcpReceived, tcpSent, type PeerLabels, type RequestLabels } from '../metrics.ts';
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
  /** The policy (`ns/name`) and rule that allowed or denied it, when one did. */
  policy?: string;
  rule?: string;
  /** AUDIT rules that matched (`ns/policy:rule`): what they would have denied. */
  audits?: string[];
}

/** One HTTP request the L7 path handled. */
export interface RequestInfo {
  connection: OpenedInfo;
  protocol: 'http/1.1' | 'h2';
  method: string;
  path: string;
  host: string;
  status: number;
  grpcStatus?: number;
  durationMs: number;
  /** Set when policy denied the request: why. */
  denied?: string;
  policy?: string;
  rule?: string;
  audits?: string[];
  /** The request's trace, when tracing is on; `sampled`: its spans are exported. */
  traceId?: string;
  sampled?: boolean;
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

  constructor(write: (line: string) => void = batchedStdout()) {
    this.#write = write;
  }

  openConnections(): OpenConnection[] {
    return [...this.#open.values()];
  }

  opened(info: OpenedInfo): ConnectionHandle {
    const id = this.#next++;
    this.#open.set(id, { id, info, startedAt: Date.now() });
    const labels = cachedPeerLabels(info, info.direction === 'outbound' ? 'source' : 'destination');
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

  refused(o: {
    direction: Direction;
    peer: string;
    reason: string;
    source?: Workload | undefined;
    sourcePrincipal?: string | undefined;
    destination?: Workload | undefined;
    target?: Address;
    policy?: string | undefined;
    rule?: string | undefined;
    audits?: string[] | undefined;
  }): void {
    const info: OpenedInfo = { direction: o.direction, mode: 'passthrough', source: o.source, destination: o.destination, target: o.target ?? { ip: '', port: 0 }, peer: o.peer };
    if (o.sourcePrincipal) info.sourcePrincipal = o.sourcePrincipal;
    if (o.policy) info.policy = o.policy;
    if (o.rule) info.rule = o.rule;
    if (o.audits?.length) info.audits = o.audits;
    tcpOpened.inc(peerLabels(info, o.direction === 'outbound' ? 'source' : 'destination', 'REFUSED'));
    this.#log(info, 'refused', undefined, o.reason);
  }

  /** An HTTP request the L7 path finished (allowed or denied): metrics and an access line. */
  request(r: RequestInfo): void {
    const labels: RequestLabels = {
      ...workloadLabels(r.connection, 'destination'),
      request_protocol: r.protocol === 'h2' ? (r.grpcStatus !== undefined ? 'grpc' : 'http2') : 'http',
      response_code: String(r.status),
      grpc_response_status: r.grpcStatus === undefined ? '' : String(r.grpcStatus),
    };
    requests.inc(labels);
    // Only a sampled request's trace can be found in the backend, so only it becomes an exemplar.
    requestDuration.observe(r.sampled && r.traceId ? { labels, value: r.durationMs / 1000, exemplarLabels: { trace_id: r.traceId } as unknown as Partial<RequestLabels> } : { labels, value: r.durationMs / 1000 });
    const c = r.connection;
    this.#write(
      `${JSON.stringify({
        ts: new Date().toISOString(),
        kind: 'request',
        direction: c.direction,
        result: r.denied ? 'denied' : 'ok',
        ...(r.denied ? { reason: r.denied } : {}),
        policy: r.policy,
        rule: r.rule,
        audits: r.audits,
        source: c.source?.key,
        source_identity: c.sourcePrincipal ?? c.source?.identity,
        destination: c.destination?.key,
        destination_identity: c.destination?.identity,
        target: `${c.target.ip}:${c.target.port}`,
        protocol: r.protocol,
        method: r.method,
        host: r.host,
        path: r.path,
        status: r.status,
        grpc_status: r.grpcStatus,
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        trace_id: r.traceId,
      })}\n`,
    );
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
        policy: info.policy,
        rule: info.rule,
        audits: info.audits,
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

/**
 * Access lines leave once per event-loop turn, together: at a thousand connections a second, one
 * write(2) each (stdout is synchronous for files and pipes) was a tenth of the agent's time on the
 * connection path. What is pending goes out at exit too.
 */
function batchedStdout(): (line: string) => void {
  let pending = '';
  const flush = (): void => {
    const out = pending;
    pending = '';
    if (out) process.stdout.write(out);
  };
  process.once('exit', flush);
  return (line) => {
    if (!pending) setImmediate(flush);
    pending += line;
  };
}

/** No workload (outside the mesh): a key for the label cache. */
const NOBODY = {};
type LabelCache = WeakMap<object, WeakMap<object, Map<string, PeerLabels>>>;
const labelCache: LabelCache = new WeakMap();

/**
 * The peer labels of a connection that opened, built once per (source, destination, reporter,
 * service, principal): workloadName's pattern and a nine-field object per connection showed in the
 * connection-rate profile. Keyed by the store's workload objects, so a changed workload (a new
 * object) gets new labels and the old entries go with it.
 */
function cachedPeerLabels(info: OpenedInfo, reporter: 'source' | 'destination'): PeerLabels {
  let bySource = labelCache.get(info.source ?? NOBODY);
  if (!bySource) labelCache.set(info.source ?? NOBODY, (bySource = new WeakMap<object, Map<string, PeerLabels>>()));
  let byRest = bySource.get(info.destination ?? NOBODY);
  if (!byRest) bySource.set(info.destination ?? NOBODY, (byRest = new Map<string, PeerLabels>()));
  const key = `${reporter}\n${info.service?.key ?? ''}\n${info.sourcePrincipal ?? ''}`;
  let labels = byRest.get(key);
  if (!labels) {
    // Principals that no workload stands for (foreign peers) must not grow it without bound.
    if (byRest.size >= 1024) byRest.clear();
    byRest.set(key, (labels = peerLabels(info, reporter, '-')));
  }
  return labels;
}

function peerLabels(info: OpenedInfo, reporter: 'source' | 'destination', flags: string): PeerLabels {
  return { ...workloadLabels(info, reporter), response_flags: flags };
}

function workloadLabels(info: OpenedInfo, reporter: 'source' | 'destination'): Omit<PeerLabels, 'response_flags'> {
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
  };
}

/** The workload a pod belongs to: its app label, else its name without the ReplicaSet suffixes. */
export function workloadName(w: Workload): string {
  return w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.name.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '');
}
