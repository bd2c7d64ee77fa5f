// Spans for the requests the agent handles at L7, exported over OTLP. One RequestTracing per data
// plane (per thread); absent when tracing is off, so that the L7 path then does no tracing work
// at all.
//
// Propagation: the parent comes from W3C `traceparent`/`tracestate`, else from B3 (single `b3` or
// `x-b3-*`); the request forwarded carries the agent span's context in the same formats it came
// in (W3C always), so the application's spans nest under the agent's. `baggage` is not read: it
// passes through untouched, which is what a hop that adds no entries owes it.
//
// Sampling is parent-based: a request carrying a sampling decision keeps it; one without a trace
// starts one with the ratio of its destination (the namespace's annotation, else the chart's).
//
// Export never touches traffic, and a collector that is slow, down or stopped costs bounded memory:
// spans go to a batch processor whose queue is bounded (new spans are dropped when it is full),
// and on to the collector one batch at a time, each export with a deadline after which its
// connection is destroyed (BoundedExporter). Every span lost is counted in
// weft_trace_spans_dropped_total{reason}.
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { type Attributes, type Context, type SpanContext, ROOT_CONTEXT, context, SpanKind, SpanStatusCode, TraceFlags, type TextMapGetter, type TextMapSetter, createContextKey, trace } from '@opentelemetry/api';
import { CompositePropagator, type ExportResult, ExportResultCode, W3CTraceContextPropagator, suppressTracing } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { type ReadableSpan, type Sampler, SamplingDecision, type SamplingResult, type SpanExporter, type SpanProcessor, TraceIdRatioBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { Workload } from '../../api/agent-sync.ts';
import { traceSpansDropped, traceSpansExported } from '../metrics.ts';
import { type TracingSettings, tracesUrl } from './settings.ts';

/** What the tracer reads of a request: the L7 path's HttpRequestInfo satisfies it. */
export interface TracedRequest {
  method: string;
  path: string;
  host: string;
  protocol: 'http/1.1' | 'h2';
  grpc: boolean;
  header(name: string): string | undefined;
}

export interface SpanStart {
  /** Attributes known when the request arrives (mesh peers, policy, addresses). */
  attributes?: Attributes;
  /** The ratio for a request that arrives without a trace; the agent's default when absent. */
  samplingRatio?: number | undefined;
  /** `server.port`: the port the request was addressed to. */
  port?: number;
  /** `client.address`. */
  clientAddress?: string;
}

export interface SpanEnd {
  /** The status the client got (0: none, the exchange was cut). */
  status: number;
  grpcStatus?: number | undefined;
  /** Why the exchange failed, when it did (becomes `error.type`). */
  error?: string | undefined;
}

export interface RequestSpan {
  /** 32 hex digits. */
  readonly traceId: string;
  /** Whether the span is exported (and may be an exemplar). */
  readonly sampled: boolean;
  /** Set these on the request the agent forwards: they carry this span's context. */
  readonly headers: Readonly<Record<string, string>>;
  setAttributes(a: Attributes): void;
  end(r: SpanEnd): void;
}

const RATIO_KEY = createContextKey('weft.sampling.ratio');

const requestGetter: TextMapGetter<TracedRequest> = {
  get: (req, key) => req.header(key),
  // Only the composite propagator's fields are asked for, one by one.
  keys: () => [],
};

const recordSetter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/**
 * Parent-based, then a trace-id ratio for roots. The ratio rides in the context (per request: a
 * namespace may override the chart's), so one provider serves every workload on the node.
 */
class MeshSampler implements Sampler {
  readonly #byRatio = new Map<number, TraceIdRatioBasedSampler>();
  readonly #default: number;

  constructor(ratio: number) {
    this.#default = ratio;
  }

  shouldSample(context: Context, traceId: string): SamplingResult {
    const parent = trace.getSpanContext(context);
    if (parent && trace.isSpanContextValid(parent)) {
      return { decision: (parent.traceFlags & TraceFlags.SAMPLED) !== 0 ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
    }
    const ratio = (context.getValue(RATIO_KEY) as number | undefined) ?? this.#default;
    if (ratio <= 0) return { decision: SamplingDecision.NOT_RECORD };
    if (ratio >= 1) return { decision: SamplingDecision.RECORD_AND_SAMPLED };
    let s = this.#byRatio.get(ratio);
    if (!s) {
      // Ratios come from the chart and annotations: a handful of distinct values.
      if (this.#byRatio.size > 64) this.#byRatio.clear();
      s = new TraceIdRatioBasedSampler(ratio);
      this.#byRatio.set(ratio, s);
    }
    return s.shouldSample(context, traceId);
  }

  toString(): string {
    return `MeshSampler{parent-based, ratio=${this.#default}}`;
  }
}

/**
 * The exporter's HTTP agent: one connection at most, and `abort` destroys every socket it opened.
 * The OTLP exporter's own timeout is a socket idle timeout that Node starts only once the socket has
 * connected, so a request to a collector whose SYNs go unanswered stays pending (and holds its
 * serialized batch) until the kernel gives up on the handshake, minutes later.
 */
function exportAgent(url: string): { agent: http.Agent; abort: () => void } {
  const options = { keepAlive: true, maxSockets: 1, maxFreeSockets: 1 };
  const agent = url.startsWith('https:') ? new https.Agent(options) : new http.Agent(options);
  const open = new Set<Duplex>();
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (o, callback) => {
    const socket = create(o, callback);
    if (socket) {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    }
    return socket;
  };
  return {
    agent,
    abort: () => {
      for (const socket of open) socket.destroy();
    },
  };
}

/** How long an aborted export may take to let go before the batch processor moves on regardless. */
const ABORT_GRACE_MS = 1000;

/**
 * What stands between the batch processor and the OTLP exporter: at most one export in flight, each
 * with a deadline, and every span that does not reach the collector counted.
 *
 * A collector that is stopped, or whose SYNs are lost, leaves an export without an answer. At the
 * deadline its spans count as dropped (`export_failed`) and its connection is destroyed, so that the
 * exporter lets go of the batch (spans and serialized request) rather than keeping it until the
 * kernel's own timeout. Until the exporter has answered, a new batch is dropped at once
 * (`export_busy`) instead of joining a second request: what a dead collector makes the agent hold
 * is the queue plus one batch, whatever the load. BoundedBatchProcessor sends one batch at a time
 * already; this gate holds when an exporter is still holding on after the grace.
 */
export class BoundedExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #log: TracingLog;
  readonly #deadlineMs: number;
  readonly #abort: () => void;
  #inFlight = false;
  #lastLogged = 0;

  constructor(inner: SpanExporter, log: TracingLog, deadlineMs: number, abort: () => void = () => {}) {
    this.#inner = inner;
    this.#log = log;
    this.#deadlineMs = deadlineMs;
    this.#abort = abort;
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    if (this.#inFlight) {
      traceSpansDropped.inc({ reason: 'export_busy' }, spans.length);
      this.#warn(spans.length, 'the previous export has not finished');
      done({ code: ExportResultCode.FAILED, error: new Error('the previous export has not finished') });
      return;
    }
    this.#inFlight = true;
    let counted = false;
    let reported = false;
    const count = (r: ExportResult): void => {
      if (counted) return;
      counted = true;
      if (r.code === ExportResultCode.SUCCESS) traceSpansExported.inc(spans.length);
      else {
        traceSpansDropped.inc({ reason: 'export_failed' }, spans.length);
        this.#warn(spans.length, r.error?.message ?? 'unknown');
      }
    };
    const report = (r: ExportResult): void => {
      if (reported) return;
      reported = true;
      clearTimeout(timer);
      done(r);
    };
    // At the deadline the spans are lost; the batch processor hears of it once the exporter has let
    // go (its connection destroyed, the answer is a moment away), so that the next batch finds it
    // free. An exporter that still holds on after a grace is reported anyway: batches that come
    // meanwhile are dropped as busy.
    const timedOut: ExportResult = { code: ExportResultCode.FAILED, error: new Error(`no answer within ${this.#deadlineMs} ms`) };
    let timer = setTimeout(() => {
      count(timedOut);
      this.#abort();
      timer = setTimeout(() => report(timedOut), ABORT_GRACE_MS);
      timer.unref();
    }, this.#deadlineMs);
    timer.unref();
    this.#inner.export(spans, (r) => {
      this.#inFlight = false;
      count(r);
      report(r);
    });
  }

  #warn(spans: number, error: string): void {
    const now = Date.now();
    if (now - this.#lastLogged <= 60_000) return;
    this.#lastLogged = now;
    this.#log('warn', 'span export failed; spans dropped', { spans, error });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

interface BatchOptions {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
}

/**
 * Finished spans, queued and sent in batches, one export at a time; after a failed export, until
 * one succeeds, one batch is kept for the collector and other spans are dropped
 * (`collector_failing`). The SDK's BatchSpanProcessor
 * does not keep to one: after a failed export it clears its exporting flag a second time, once the
 * next batch has already begun, and a flush sends every queued batch at once. A queue that is full
 * drops the new span (`queue_full`); a flush (and shutdown) sends what is queued one batch after
 * another, and after a failed batch drops the rest at once (counted): a collector that did not
 * answer one will not answer the next, and shutdown should not wait a deadline per batch.
 */
class BoundedBatchProcessor implements SpanProcessor {
  readonly #exporter: BoundedExporter;
  readonly #o: BatchOptions;
  #queue: ReadableSpan[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The export in flight; resolves to whether it succeeded. */
  #sending: Promise<boolean> | undefined;
  /** The last export failed (collector down, stopped, refusing): one batch waits for it, not a queue. */
  #failing = false;
  #shutdown = false;

  constructor(exporter: BoundedExporter, o: BatchOptions) {
    this.#exporter = exporter;
    this.#o = o;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#failing && this.#queue.length >= this.#o.maxExportBatchSize) return void traceSpansDropped.inc({ reason: 'collector_failing' });
    if (this.#queue.length >= this.#o.maxQueueSize) return void traceSpansDropped.inc({ reason: 'queue_full' });
    this.#queue.push(span);
    this.#schedule();
  }

  async forceFlush(): Promise<void> {
    // The export timers are unref'd (they must not hold a process open); a flush that is awaited
    // must, until its deadlines have passed.
    const hold = setInterval(() => {}, 60_000);
    try {
      // What is queued now goes; spans that end meanwhile wait for the timer.
      for (let batches = Math.ceil(this.#queue.length / this.#o.maxExportBatchSize); batches > 0; batches--) {
        while (this.#sending) await this.#sending;
        if (!(await this.#send())) {
          const lost = this.#queue.splice(0, (batches - 1) * this.#o.maxExportBatchSize);
          if (lost.length > 0) traceSpansDropped.inc({ reason: 'export_failed' }, lost.length);
          break;
        }
      }
      while (this.#sending) await this.#sending;
    } finally {
      clearInterval(hold);
    }
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    this.#shutdown = true;
    clearTimeout(this.#timer);
    await this.#exporter.shutdown();
  }

  /** Sends a full batch now, or a partial one after the delay; nothing while an export is in flight. */
  #schedule(): void {
    if (this.#sending || this.#queue.length === 0) return;
    if (this.#queue.length >= this.#o.maxExportBatchSize) return void this.#send();
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#send();
    }, this.#o.scheduledDelayMs);
    this.#timer.unref();
  }

  #send(): Promise<boolean> {
    if (this.#sending) return this.#sending;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue.splice(0, this.#o.maxExportBatchSize);
    if (batch.length === 0) return Promise.resolve(true);
    const sending = new Promise<boolean>((resolve) => {
      // Spans of the exporter's own HTTP request would be traced by an instrumented process.
      context.with(suppressTracing(context.active()), () => this.#exporter.export(batch, (r) => resolve(r.code === ExportResultCode.SUCCESS)));
    });
    this.#sending = sending;
    void sending.then((ok) => {
      this.#sending = undefined;
      this.#failing = !ok;
      if (!ok) {
        // A collector that did not take this batch will not take a queue of them soon: what waits
        // for it is one batch (the next export, a probe), and the agent holds no more for it.
        const lost = this.#queue.splice(this.#o.maxExportBatchSize);
        if (lost.length > 0) traceSpansDropped.inc({ reason: 'collector_failing' }, lost.length);
      }
      this.#schedule();
    });
    return sending;
  }
}

export type TracingLog = (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;

export interface RequestTracingOptions {
  /** This node's name (`k8s.node.name`, `weft.node`). */
  node: string;
  log?: TracingLog;
  /** Replaces the OTLP exporter (tests). */
  exporter?: SpanExporter;
}

export class RequestTracing {
  readonly settings: TracingSettings;
  readonly #provider: TracerProvider;
  readonly #tracer: ReturnType<TracerProvider['getTracer']>;
  readonly #w3c = new W3CTraceContextPropagator();
  // B3 first, W3C last: when a request carries both, W3C wins.
  readonly #extract = new CompositePropagator({ propagators: [new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }), this.#w3c] });
  readonly #b3Single = new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER });
  readonly #b3Multi = new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });
  readonly #node: string;

  constructor(settings: TracingSettings, o: RequestTracingOptions) {
    this.settings = settings;
    this.#node = o.node;
    const log = o.log ?? (() => {});
    let abort: (() => void) | undefined;
    let inner = o.exporter;
    if (!inner) {
      const url = tracesUrl(settings.endpoint);
      const { agent, abort: destroy } = exportAgent(url);
      abort = destroy;
      // BoundedExporter admits one export at a time; the exporter frees its own slot a few
      // microtasks after it answered, so its limit of one would refuse the next batch now and then.
      const config = { url, timeoutMillis: settings.exportTimeoutMs, concurrencyLimit: 2, httpAgentOptions: () => Promise.resolve(agent) };
      inner = settings.protocol === 'http/json' ? new OtlpJsonExporter(config) : new OtlpProtoExporter(config);
    }
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'weft-agent', 'service.instance.id': o.node, 'k8s.node.name': o.node }),
      sampler: new MeshSampler(settings.samplingRatio),
      spanProcessors: [
        new BoundedBatchProcessor(new BoundedExporter(inner, log, settings.exportTimeoutMs, abort), {
          maxQueueSize: settings.maxQueueSize,
          maxExportBatchSize: settings.maxExportBatchSize,
          scheduledDelayMs: settings.scheduledDelayMs,
        }),
      ],
    });
    this.#tracer = this.#provider.getTracer('weft-agent');
  }

  /** The span of a request this agent received for a local workload (the destination side). */
  startServerSpan(req: TracedRequest, start: SpanStart = {}): RequestSpan {
    return this.#start(req, start, SpanKind.SERVER);
  }

  /** The span of a request this agent sends on a workload's behalf (the source side, where it routes). */
  startClientSpan(req: TracedRequest, start: SpanStart = {}): RequestSpan {
    return this.#start(req, start, SpanKind.CLIENT);
  }

  /** The sampling ratio for requests to `destination` that arrive without a trace; undefined: the chart's. */
  ratioFor(destination: Workload | undefined): number | undefined {
    return destination?.traceSampling;
  }

  /** Sends what is queued (bounded by the export timeout). */
  async flush(): Promise<void> {
    await this.#provider.forceFlush().catch(() => {});
  }

  async shutdown(): Promise<void> {
    await this.#provider.shutdown().catch(() => {});
  }

  #start(req: TracedRequest, start: SpanStart, kind: SpanKind): RequestSpan {
    let parent = this.#extract.extract(ROOT_CONTEXT, req, requestGetter);
    if (start.samplingRatio !== undefined) parent = parent.setValue(RATIO_KEY, start.samplingRatio);
    const grpc = req.grpc && req.protocol === 'h2';
    const name = grpc ? req.path.slice(1) || req.method : req.method;
    const span = this.#tracer.startSpan(name, { kind }, parent);
    const ctx = span.spanContext();
    const sampled = (ctx.traceFlags & TraceFlags.SAMPLED) !== 0;
    if (span.isRecording()) span.setAttributes(this.#requestAttributes(req, start, grpc));
    const headers: Record<string, string> = {};
    const out = trace.setSpan(ROOT_CONTEXT, span);
    this.#w3c.inject(out, headers, recordSetter);
    if (req.header('b3') !== undefined) this.#b3Single.inject(out, headers, recordSetter);
    else if (req.header('x-b3-traceid') !== undefined) this.#b3Multi.inject(out, headers, recordSetter);
    return {
      traceId: ctx.traceId,
      sampled,
      headers,
      setAttributes: (a) => {
        if (span.isRecording()) span.setAttributes(a);
      },
      end: (r) => {
        if (span.isRecording()) endAttributes(span, r, grpc, kind);
        span.end();
      },
    };
  }

  #requestAttributes(req: TracedRequest, start: SpanStart, grpc: boolean): Attributes {
    const a: Attributes = {
      [ATTR_HTTP_REQUEST_METHOD]: req.method,
      [ATTR_URL_PATH]: req.path,
      [ATTR_URL_SCHEME]: 'http',
      [ATTR_SERVER_ADDRESS]: req.host,
      [ATTR_NETWORK_PROTOCOL_VERSION]: req.protocol === 'h2' ? '2' : '1.1',
      'weft.node': this.#node,
      ...start.attributes,
    };
    if (start.port !== undefined) a[ATTR_SERVER_PORT] = start.port;
    if (start.clientAddress) a[ATTR_CLIENT_ADDRESS] = start.clientAddress;
    const ua = req.header('user-agent');
    if (ua !== undefined) a[ATTR_USER_AGENT_ORIGINAL] = ua.slice(0, 256);
    if (grpc) {
      const slash = req.path.lastIndexOf('/');
      a['rpc.system'] = 'grpc';
      if (slash > 0) {
        a['rpc.service'] = req.path.slice(1, slash);
        a['rpc.method'] = req.path.slice(slash + 1);
      }
    }
    return a;
  }
}

// gRPC codes that mean the server failed (semantic conventions, gRPC server spans).
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

function endAttributes(span: ReturnType<ReturnType<TracerProvider['getTracer']>['startSpan']>, r: SpanEnd, grpc: boolean, kind: SpanKind): void {
  if (r.status > 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, r.status);
  if (grpc && r.grpcStatus !== undefined) span.setAttribute('rpc.grpc.status_code', r.grpcStatus);
  let error = r.error;
  if (!error && r.status === 0) error = 'no response';
  if (!error && (r.status >= 500 || (kind === SpanKind.CLIENT && r.status >= 400))) error = String(r.status);
  if (!error && grpc && r.grpcStatus !== undefined && (kind === SpanKind.CLIENT ? r.grpcStatus !== 0 : GRPC_SERVER_ERRORS.has(r.grpcStatus))) error = `grpc ${r.grpcStatus}`;
  if (error) {
    span.setAttribute(ATTR_ERROR_TYPE, error);
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
}

const recordGetter: TextMapGetter<Record<string, string>> = { get: (c, k) => c[k], keys: (c) => Object.keys(c) };

/** The span context of a W3C traceparent value, for tests and tools. */
export function parseTraceparent(value: string): SpanContext | undefined {
  return trace.getSpanContext(new W3CTraceContextPropagator().extract(ROOT_CONTEXT, { traceparent: value }, recordGetter));
}
