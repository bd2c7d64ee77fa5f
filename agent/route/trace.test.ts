// A routed request gets a client span in the client's agent, and the request it sends upstream
// carries that span as its parent (so the destination agent's server span and the app's spans
// nest under it). Real pieces: the route proxy and its state store, real sockets on 127.0.0.1, an
// HTTP server standing for the backend, the OpenTelemetry SDK with an in-memory exporter.
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import t from 'tap';
import { PolicyEnforcer } from '../proxy/enforcer.ts';
import { ConnectionReporter } from '../proxy/report.ts';
import { DEFAULT_TRACING, RequestTracing, parseTraceparent } from '../tracing/index.ts';
import { RouteProxy } from './proxy.ts';
import { h2Front, oneRouteState, routeClient } from './test-fixtures.ts';

const PARENT = '0af7651916cd43dd8448eb211c80319c';
const PARENT_SPAN = 'b7ad6b7169203331';

t.test('a routed request: a client span with the route, parent of what the backend receives', async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const backend = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.end('ok');
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.teardown(() => backend.close());
  const backendPort = (backend.address() as net.AddressInfo).port;

  const { service, store } = oneRouteState([backendPort], 'web-route');
  const source = routeClient('client-7d9f');

  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing({ ...DEFAULT_TRACING, endpoint: 'http://127.0.0.1:9', samplingRatio: 0, scheduledDelayMs: 10 }, { node: 'node-a', exporter });
  t.teardown(() => tracing.shutdown());
  const p = {
    store,
    node: 'node-a',
    report: new ConnectionReporter(() => {}),
    enforcer: new PolicyEnforcer({ store, installNamespace: 'weft-system', log: () => {} }),
    connectTimeoutMs: 2000,
    idleTimeoutMs: 10_000,
    tracing,
  };
  const proxy = new RouteProxy({ p, openTunnel: () => Promise.reject(new Error('the backend is not meshed: no tunnel')) });

  // The capture listener's part: hand each accepted connection to the route proxy.
  const front = net.createServer((down) => {
    t.ok(proxy.routes(source, service, 80), 'the client has a route for the Service port');
    proxy.serve(down, source, service, 80, () => down.destroy());
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => front.close());

  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, path: '/items', headers: { host: 'web.a', traceparent: `00-${PARENT}-${PARENT_SPAN}-01` }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(status, 200, 'routed to the backend');

  await tracing.flush();
  const spans = exporter.getFinishedSpans();
  t.equal(spans.length, 1, 'one span for the request');
  const span = spans[0];
  t.equal(span?.kind, SpanKind.CLIENT, 'a client span');
  t.equal(span?.spanContext().traceId, PARENT, "it continues the app's trace");
  t.equal(span?.parentSpanContext?.spanId, PARENT_SPAN, "under the app's span");
  t.match(span?.attributes, { 'weft.route': 'HTTPRoute/a/web-route', 'weft.route.rule': '0', 'weft.route.retries': 0, 'weft.source.namespace': 'a', 'weft.destination.service': 'a/web', 'http.response.status_code': 200 });
  t.match(span?.attributes['weft.route.backend'], /a\/web/, 'and the backend it chose');

  const upstream = parseTraceparent(String(seen[0]?.traceparent ?? ''));
  t.equal(upstream?.traceId, PARENT, 'the upstream request stays in the trace');
  t.equal(upstream?.spanId, span?.spanContext().spanId, "and its parent is the agent's client span, not the app's");
});

t.test('a routed gRPC call on h2c: a client span named for the method, with the gRPC status, parent of what the backend receives', async (t) => {
  const seen: http2.IncomingHttpHeaders[] = [];
  const backend = http2.createServer();
  backend.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.on('error', () => {});
    stream.resume();
    stream.once('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '5' }));
      stream.end();
    });
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.teardown(() => backend.close());
  const { service, store } = oneRouteState([(backend.address() as net.AddressInfo).port], 'web-route');
  const source = routeClient();
  const exporter = new InMemorySpanExporter();
  const tracing = new RequestTracing({ ...DEFAULT_TRACING, endpoint: 'http://127.0.0.1:9', samplingRatio: 0, scheduledDelayMs: 10 }, { node: 'node-a', exporter });
  t.teardown(() => tracing.shutdown());
  const client = await h2Front(t, store, source, service, 80, tracing);
  const s = client.request({ ':method': 'POST', ':path': '/pkg.Echo/Hello', ':authority': 'web.a', 'content-type': 'application/grpc', traceparent: `00-${PARENT}-${PARENT_SPAN}-01` });
  let grpcStatus = '';
  s.on('trailers', (tr: http2.IncomingHttpHeaders) => (grpcStatus = String(tr['grpc-status'] ?? '')));
  s.on('error', () => {});
  s.resume();
  s.end('x');
  await new Promise((resolve) => s.once('close', resolve));
  t.equal(grpcStatus, '5', 'the call went through with its gRPC status');
  await tracing.flush();
  const spans = exporter.getFinishedSpans();
  t.equal(spans.length, 1, 'one span for the call');
  const span = spans[0];
  t.equal(span?.kind, SpanKind.CLIENT);
  t.equal(span?.name, 'pkg.Echo/Hello', 'named for the gRPC method');
  t.equal(span?.spanContext().traceId, PARENT);
  t.match(span?.attributes, { 'weft.route': 'HTTPRoute/a/web-route', 'rpc.grpc.status_code': 5 });
  const upstream = parseTraceparent(String(seen[0]?.traceparent ?? ''));
  t.equal(upstream?.spanId, span?.spanContext().spanId, "the upstream call's parent is the agent's client span");
});
