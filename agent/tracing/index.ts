// Distributed tracing for the agent's L7 path (OpenTelemetry, OTLP export). See tracer.ts.
export { meshAttributes, policyAttributes } from './attributes.ts';
export { DEFAULT_TRACING, tracingFromEnv, tracesUrl, type OtlpProtocol, type TracingSettings } from './settings.ts';
export { RequestTracing, parseTraceparent, type RequestSpan, type RequestTracingOptions, type SpanEnd, type SpanStart, type TracedRequest } from './tracer.ts';
