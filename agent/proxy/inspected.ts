// The L7 leg of an inbound connection whose verdict is `inspect`: HTTP is terminated on the client
// side (agent/l7), every request is decided by the evaluator, and the connection stays under the
// enforcer's watch so that a policy change that denies it closes it. One function for the three
// inbound paths (tunnel stream, plaintext socket, same-node socket).
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { serveHttp, type HttpRequestInfo, type L7Limits, type PathOptions } from '../l7/index.ts';
import type { ConnectionAttrs } from '../policy/attributes.ts';
import type { InspectDecision, Decision } from '../policy/decision.ts';
import { decidedBy, type PolicyEnforcer } from './enforcer.ts';
import type { ConnectionReporter, OpenedInfo } from './report.ts';
import { meshAttributes, policyAttributes } from '../tracing/attributes.ts';
import type { RequestSpan, RequestTracing } from '../tracing/tracer.ts';

export interface InspectedOptions {
  client: Duplex;
  inspect: InspectDecision;
  attrs: ConnectionAttrs;
  info: OpenedInfo;
  enforcer: PolicyEnforcer;
  report: ConnectionReporter;
  dial: () => Promise<Socket>;
  idleTimeoutMs?: number;
  l7?: InspectSettings;
  /** Absent when tracing is off: then no span and no trace header is looked at. */
  tracing?: RequestTracing | undefined;
}

/** The agent's L7 settings (chart values agent.l7.*); the defaults of agent/l7 when absent. */
export interface InspectSettings {
  limits: L7Limits;
  path: PathOptions;
}

export async function serveInspected(o: InspectedOptions): Promise<void> {
  const started = performance.now();
  const handle = o.report.opened({ ...o.info, ...decidedBy({ audits: o.inspect.audits }) });
  // authorize() and onRequest() are separate callbacks: the request object links them.
  const decisions = new WeakMap<HttpRequestInfo, Decision>();
  const tracing = o.tracing;
  const spans = tracing ? new WeakMap<HttpRequestInfo, RequestSpan>() : undefined;
  const spanStart = tracing ? { attributes: meshAttributes(o.info), port: o.info.target.port, clientAddress: hostOfPeer(o.info.peer), samplingRatio: tracing.ratioFor(o.info.destination) } : undefined;
  const session = serveHttp(o.client, {
    dial: o.dial,
    ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
    ...(o.l7 ? { limits: o.l7.limits, path: o.l7.path } : {}),
    authorize: (req) => {
      const d = o.enforcer.request(o.inspect, req, o.info);
      decisions.set(req, d);
      if (!tracing || !spans || !spanStart) return d.verdict === 'allow' ? { allow: true } : { allow: false, reason: d.reason };
      // The span is the parent the pod sees: its context goes up with the request.
      const span = tracing.startServerSpan(req, spanStart);
      if (span.sampled) span.setAttributes(policyAttributes(d));
      spans.set(req, span);
      return d.verdict === 'allow' ? { allow: true, headers: span.headers } : { allow: false, reason: d.reason };
    },
    onRequest: (r) => {
      const d = decisions.get(r.req);
      const span = spans?.get(r.req);
      span?.end({ status: r.status, grpcStatus: r.grpcStatus });
      o.report.request({
        connection: o.info,
        protocol: r.req.protocol,
        method: r.req.method,
        path: r.req.path,
        host: r.req.host,
        status: r.status,
        ...(r.grpcStatus !== undefined ? { grpcStatus: r.grpcStatus } : {}),
        durationMs: r.durationMs,
        ...(r.denied !== undefined ? { denied: r.denied } : {}),
        ...(d ? decidedBy(d) : {}),
        ...(span ? { traceId: span.traceId, sampled: span.sampled } : {}),
      });
    },
  });
  const untrack = o.enforcer.track({ attrs: o.attrs, inspected: true, close: (reason) => session.close(reason) });
  const result = await session.done;
  untrack();
  const socket = 'bytesRead' in o.client ? (o.client as Socket) : undefined;
  handle.closed({ received: socket?.bytesRead ?? 0, sent: socket?.bytesWritten ?? 0, durationMs: performance.now() - started, error: result.error });
}

/** The address of an `ip:port` peer (IPv6 in brackets or not). */
function hostOfPeer(peer: string): string {
  const colon = peer.lastIndexOf(':');
  const host = colon === -1 ? peer : peer.slice(0, colon);
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
