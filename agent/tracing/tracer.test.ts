// Request spans: propagation in and out (W3C, B3), sampling, the headers the pod gets through the
// real L7 path (HTTP/1.1 and h2), and the bounded export with its dropped-span count.
import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExportResultCode } from '@opentelemetry/core';
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import t, { type Test } from 'tap';
import { connect2, keepAliveAgent, request1, request2, startFront, startHttp1Upstream, startHttp2Upstream } from '../l7/test-fixtures.ts';
import type { HttpRequestInfo } from '../l7/index.ts';
import { registry, traceSpansDropped } from '../metrics.ts';
import { DEFAULT_TRACING, RequestTracing, type TracedRequest, type TracingSettings, parseTraceparent, tracingFromEnv, tracesUrl } from './index.ts';

const settings = (over: Partial<TracingSettings> = {}): TracingSettings => ({ ...DEFAULT_TRACING, endpoint: 'http://127.0.0.1:9', scheduledDelayMs: 10, ...over });

function request(headers: Record<string, string> = {}, over: Partial<TracedRequest> = {}): TracedRequest {
  return { method: 'GET', path: '/items', host: 'shop.example', protocol: 'http/1.1', grpc: false, header: (n) => headers[n], ...over };
}

async function finished(t: Test, tracing: RequestTracing, exporter: InMemorySpanExporter): Promise<ReadableSpan[]> {
  await tracing.flush();
  t.teardown(() => tracing.shutdown());
  return exporter.getFinishedSpans();
}

const PARENT = '0af7651916cd43dd8448eb211c80319c';
const PARENT_SPAN = 'b7ad6b7169203331';

t.test('a sampled W3C parent is continued: same trace, the agent span is the parent the pod sees', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 0 }), { node: 'node-a', exporter });
  const span = tracing.startServerSpan(request({ traceparent: `00-${PARENT}-${PARENT_SPAN}-01`, tracestate: 'vendor=x' }), { attributes: { 'weft.source.workload': 'client' }, port: 8080 });
  t.equal(span.traceId, PARENT);
  t.ok(span.sampled, 'the parent sampled it, whatever the ratio');
  const out = parseTraceparent(span.headers.traceparent ?? '');
  t.equal(out?.traceId, PARENT);
  t.not(out?.spanId, PARENT_SPAN, "the pod's parent is the agent's span, not the client's");
  t.equal(span.headers.tracestate, 'vendor=x', 'tracestate goes on');
  span.end({ status: 200 });
  const [s] = await finished(t, tracing, exporter);
  t.equal(s?.parentSpanContext?.spanId, PARENT_SPAN);
  t.equal(s?.spanContext().spanId, out?.spanId);
  t.equal(s?.name, 'GET');
  t.match(s?.attributes, { 'http.request.method': 'GET', 'url.path': '/items', 'server.address': 'shop.example', 'server.port': 8080, 'http.response.status_code': 200, 'weft.node': 'node-a', 'weft.source.workload': 'client' });
});

t.test('an unsampled parent stays unsampled and exports nothing; its context still goes on', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 1 }), { node: 'n', exporter });
  const span = tracing.startServerSpan(request({ traceparent: `00-${PARENT}-${PARENT_SPAN}-00` }));
  t.notOk(span.sampled);
  t.match(span.headers.traceparent, new RegExp(`^00-${PARENT}-[0-9a-f]{16}-00$`));
  span.end({ status: 200 });
  t.equal((await finished(t, tracing, exporter)).length, 0);
});

t.test('without a trace the ratio decides, and a per-destination ratio overrides the default', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 0 }), { node: 'n', exporter });
  const off = tracing.startServerSpan(request());
  t.notOk(off.sampled, 'ratio 0: not sampled');
  t.match(off.headers.traceparent, /-00$/, 'but the pod still gets a trace context to continue');
  const on = tracing.startServerSpan(request(), { samplingRatio: 1 });
  t.ok(on.sampled, 'the namespace says 1');
  off.end({ status: 200 });
  on.end({ status: 503 });
  const spans = await finished(t, tracing, exporter);
  t.equal(spans.length, 1);
  t.equal(spans[0]?.parentSpanContext, undefined, 'a root span');
  t.equal(spans[0]?.attributes['error.type'], '503', 'a 5xx is a server error');
  t.equal(tracing.ratioFor(undefined), undefined);
});

t.test('B3 is accepted on input, and answered in the same encoding beside W3C', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 0 }), { node: 'n', exporter });
  const multi = tracing.startServerSpan(request({ 'x-b3-traceid': PARENT, 'x-b3-spanid': PARENT_SPAN, 'x-b3-sampled': '1' }));
  t.equal(multi.traceId, PARENT);
  t.ok(multi.sampled);
  t.equal(multi.headers['x-b3-traceid'], PARENT);
  t.not(multi.headers['x-b3-spanid'], PARENT_SPAN);
  t.equal(parseTraceparent(multi.headers.traceparent ?? '')?.spanId, multi.headers['x-b3-spanid']);
  const single = tracing.startServerSpan(request({ b3: `${PARENT}-${PARENT_SPAN}-1` }));
  t.match(single.headers.b3, new RegExp(`^${PARENT}-[0-9a-f]{16}-1$`));
  const both = tracing.startServerSpan(request({ traceparent: `00-${'1'.repeat(32)}-${PARENT_SPAN}-01`, b3: `${PARENT}-${PARENT_SPAN}-1` }));
  t.equal(both.traceId, '1'.repeat(32), 'W3C wins over B3');
  for (const s of [multi, single, both]) s.end({ status: 200 });
  t.equal((await finished(t, tracing, exporter)).length, 3);
});

t.test('gRPC spans are named after the method and carry rpc.*', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 1 }), { node: 'n', exporter });
  const span = tracing.startServerSpan(request({}, { method: 'POST', path: '/shop.Cart/Add', protocol: 'h2', grpc: true }));
  span.end({ status: 200, grpcStatus: 14 });
  const [s] = await finished(t, tracing, exporter);
  t.equal(s?.name, 'shop.Cart/Add');
  t.match(s?.attributes, { 'rpc.system': 'grpc', 'rpc.service': 'shop.Cart', 'rpc.method': 'Add', 'rpc.grpc.status_code': 14, 'error.type': 'grpc 14' });
});

async function droppedCount(reason: string): Promise<number> {
  const m = await traceSpansDropped.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

t.test('a collector that never answers: the queue stays bounded and drops are counted', async (t) => {
  const hung: SpanExporter = { export: () => {}, shutdown: () => Promise.resolve() };
  const tracing = new RequestTracing(settings({ samplingRatio: 1, maxQueueSize: 4, maxExportBatchSize: 2, exportTimeoutMs: 200 }), { node: 'n', exporter: hung });
  const before = await droppedCount('queue_full');
  for (let i = 0; i < 20; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  t.ok((await droppedCount('queue_full')) - before >= 14, 'at most a batch in export and a queue held; the rest dropped');
  t.teardown(() => tracing.shutdown());
});

t.test('an export that never answers: its spans are counted as dropped at the deadline', async (t) => {
  const hung: SpanExporter = { export: () => {}, shutdown: () => Promise.resolve() };
  await sleep(300); // the previous test's hung exports reach their deadline first
  const tracing = new RequestTracing(settings({ samplingRatio: 1, exportTimeoutMs: 100 }), { node: 'n', exporter: hung });
  const before = await droppedCount('export_failed');
  for (let i = 0; i < 5; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  await sleep(400);
  t.equal((await droppedCount('export_failed')) - before, 5);
  t.teardown(() => tracing.shutdown());
});

t.test('a failing export: its spans are counted as dropped', async (t) => {
  const failing: SpanExporter = { export: (_s, done) => done({ code: ExportResultCode.FAILED, error: new Error('ECONNREFUSED') }), shutdown: () => Promise.resolve() };
  const logged: string[] = [];
  const tracing = new RequestTracing(settings({ samplingRatio: 1 }), { node: 'n', exporter: failing, log: (_l, msg) => logged.push(msg) });
  const before = await droppedCount('export_failed');
  for (let i = 0; i < 3; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  await tracing.flush();
  t.equal((await droppedCount('export_failed')) - before, 3);
  t.equal(logged.length, 1, 'one log line, not one per span');
  t.teardown(() => tracing.shutdown());
});

t.test('a flush sends the queue one batch after another; after a failed batch the rest are dropped, counted', async (t) => {
  let inFlight = 0;
  let most = 0;
  let accepted = 0;
  let fail = false;
  const slow: SpanExporter = {
    export: (spans, done) => {
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        if (fail) return done({ code: ExportResultCode.FAILED, error: new Error('503') });
        accepted += spans.length;
        done({ code: ExportResultCode.SUCCESS });
      }, 20);
    },
    shutdown: () => Promise.resolve(),
  };
  const tracing = new RequestTracing(settings({ samplingRatio: 1, maxQueueSize: 16, maxExportBatchSize: 2, scheduledDelayMs: 60_000 }), { node: 'n', exporter: slow });
  t.teardown(() => tracing.shutdown());
  const busy = await droppedCount('export_busy');
  for (let i = 0; i < 7; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  await tracing.flush();
  t.equal(accepted, 7, 'every batch of the queue was exported');
  t.equal(most, 1, 'one export at a time');
  t.equal((await droppedCount('export_busy')) - busy, 0, 'none dropped as busy');

  fail = true;
  const failed = (await droppedCount('export_failed')) + (await droppedCount('collector_failing'));
  for (let i = 0; i < 7; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  await tracing.flush();
  t.equal((await droppedCount('export_failed')) + (await droppedCount('collector_failing')) - failed, 7, 'the failed batch and the rest of the queue after it, counted');
  t.ok(most === 1 && accepted === 7, 'still one at a time, nothing more accepted');
});

t.test('after a failed export only one batch waits for the collector, until an export succeeds', async (t) => {
  const answers: ((r: { code: ExportResultCode }) => void)[] = [];
  const manual: SpanExporter = { export: (_s, done) => void answers.push(done), shutdown: () => Promise.resolve() };
  const tracing = new RequestTracing(settings({ samplingRatio: 1, maxQueueSize: 16, maxExportBatchSize: 2, scheduledDelayMs: 60_000 }), { node: 'n', exporter: manual });
  const failing = await droppedCount('collector_failing');
  const full = await droppedCount('queue_full');
  const spans = (n: number) => {
    for (let i = 0; i < n; i += 1) tracing.startServerSpan(request()).end({ status: 200 });
  };
  spans(2); // a full batch: sent at once
  spans(10); // queued while it is in flight
  t.equal(answers.length, 1);
  answers[0]?.({ code: ExportResultCode.FAILED });
  await sleep(10);
  t.equal((await droppedCount('collector_failing')) - failing, 8, 'the queue beyond the next batch dropped when the export failed');
  t.equal(answers.length, 2, 'the next batch went out as a probe');
  spans(5);
  t.equal((await droppedCount('collector_failing')) - failing, 11, 'while failing, one batch is kept and the rest dropped');
  answers[1]?.({ code: ExportResultCode.SUCCESS });
  await sleep(10);
  spans(10);
  t.equal((await droppedCount('collector_failing')) - failing, 11, 'an export that succeeds restores the queue');
  t.equal((await droppedCount('queue_full')) - full, 0);
  for (const a of answers.splice(0)) a({ code: ExportResultCode.SUCCESS });
  const flushing = tracing.shutdown();
  for (let i = 0; i < 20 && answers.length === 0; i++) await sleep(5);
  while (answers.length > 0) {
    answers.shift()?.({ code: ExportResultCode.SUCCESS });
    await sleep(5);
  }
  await flushing;
});

t.test('settings from the environment', async (t) => {
  t.equal(tracingFromEnv({}), null, 'no endpoint: off');
  t.equal(tracingFromEnv({ WEFT_TRACING_ENDPOINT: ' ' }), null);
  t.match(tracingFromEnv({ WEFT_TRACING_ENDPOINT: 'http://jaeger:4318', WEFT_TRACING_SAMPLING_RATIO: '5%' }), { endpoint: 'http://jaeger:4318', samplingRatio: 0.05, protocol: 'http/protobuf' });
  t.throws(() => tracingFromEnv({ WEFT_TRACING_ENDPOINT: 'jaeger:4318/' }), { code: 'CONFIG' });
  t.throws(() => tracingFromEnv({ WEFT_TRACING_ENDPOINT: 'http://j:4318', WEFT_TRACING_SAMPLING_RATIO: '2' }), { code: 'CONFIG' });
  t.throws(() => tracingFromEnv({ WEFT_TRACING_ENDPOINT: 'http://j:4318', WEFT_TRACING_PROTOCOL: 'grpc' }), { code: 'CONFIG' });
  t.equal(tracesUrl('http://j:4318'), 'http://j:4318/v1/traces');
  t.equal(tracesUrl('http://j:4318/custom/traces'), 'http://j:4318/custom/traces');
});

// Through serveHttp: the verdict's headers are what the pod reads, on both protocols.
function tracedAuthorize(tracing: RequestTracing, spans: Map<HttpRequestInfo, ReturnType<RequestTracing['startServerSpan']>>) {
  return (req: HttpRequestInfo) => {
    const span = tracing.startServerSpan(req);
    spans.set(req, span);
    return { allow: true as const, headers: span.headers };
  };
}

t.test('HTTP/1.1 and h2: the pod gets the agent span as its parent', async (t) => {
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing(settings({ samplingRatio: 0 }), { node: 'n', exporter });
  t.teardown(() => tracing.shutdown());
  const spans = new Map<HttpRequestInfo, ReturnType<RequestTracing['startServerSpan']>>();

  const up1 = await startHttp1Upstream(t);
  const front1 = await startFront(t, up1.port, { authorize: tracedAuthorize(tracing, spans) });
  const res = await request1(keepAliveAgent(t), front1.port, { path: '/a', headers: { traceparent: `00-${PARENT}-${PARENT_SPAN}-01`, baggage: 'tenant=7' } });
  t.equal(res.status, 200);
  const seen1 = (JSON.parse(res.body.toString()) as { headers: http.IncomingHttpHeaders }).headers;
  const span1 = [...spans.values()][0];
  t.equal(seen1.traceparent, span1?.headers.traceparent, 'HTTP/1.1: the traceparent the pod reads is the agent span');
  t.equal(seen1.baggage, 'tenant=7', 'baggage passes through untouched');

  const up2 = await startHttp2Upstream(t);
  const front2 = await startFront(t, up2.port, { authorize: tracedAuthorize(tracing, spans) });
  const session = connect2(t, front2.port);
  const r2 = await request2(session, { ':method': 'GET', ':path': '/b', ':authority': 'shop.example', traceparent: `00-${PARENT}-${PARENT_SPAN}-01` });
  t.equal(r2.headers[':status'], 200);
  const span2 = [...spans.values()][1];
  t.equal(up2.seen.at(-1)?.traceparent, span2?.headers.traceparent, 'h2: likewise');
  await sleep(10);
});

t.test('the registry renders Prometheus text by default and OpenMetrics with exemplars when asked', async (t) => {
  const { renderMetrics, requestDuration } = await import('../metrics.ts');
  const labels = { reporter: 'destination', source_workload: 'a', source_workload_namespace: 'ns', source_principal: 'p', destination_workload: 'b', destination_workload_namespace: 'ns', destination_principal: 'q', destination_service: 's', request_protocol: 'http', response_code: '200', grpc_response_status: '' };
  requestDuration.observe({ labels, value: 0.003, exemplarLabels: { trace_id: PARENT } as unknown as Partial<typeof labels> });
  const om = await renderMetrics(true);
  t.match(om.contentType, /application\/openmetrics-text/);
  t.match(om.text, new RegExp(`weft_request_duration_seconds_bucket\\{[^}]*le="0.005"[^}]*\\} 1 # \\{trace_id="${PARENT}"\\} 0.003`));
  t.match(om.text, /# EOF\n$/);
  const prom = await renderMetrics(false);
  t.match(prom.contentType, /^text\/plain/);
  t.notMatch(prom.text, /trace_id/);
  t.match(prom.text, /# TYPE weft_trace_spans_dropped_total counter/, 'counter names intact after an OpenMetrics render');
  t.equal(registry.contentType, om.contentType, 'the registry stays OpenMetrics-typed');
});
