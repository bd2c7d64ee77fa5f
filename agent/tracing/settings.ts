// Tracing settings, as the chart's DaemonSet passes them (values `tracing.*`). No endpoint means
// tracing is off: the L7 path then creates no span and reads no trace header.
import { parseRatio } from '../../api/tracing.ts';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface TracingSettings {
  /** The collector's OTLP/HTTP base URL (`http://collector:4318`); `/v1/traces` is appended unless the URL names a path. */
  endpoint: string;
  protocol: OtlpProtocol;
  /** Share of requests that arrive without a trace for which the agent starts one (0..1). */
  samplingRatio: number;
  /** Finished spans held for export at most; beyond it new spans are dropped and counted. */
  maxQueueSize: number;
  /** Spans per OTLP request. */
  maxExportBatchSize: number;
  /** The longest a batch waits before it is sent. */
  scheduledDelayMs: number;
  /** An export (with the exporter's retries) is abandoned after this long; its spans are dropped and counted. */
  exportTimeoutMs: number;
}

export const DEFAULT_TRACING: Omit<TracingSettings, 'endpoint'> = {
  protocol: 'http/protobuf',
  samplingRatio: 0.01,
  maxQueueSize: 1024,
  maxExportBatchSize: 256,
  scheduledDelayMs: 1000,
  exportTimeoutMs: 5000,
};

type Env = Record<string, string | undefined>;

function configError(message: string): Error {
  return Object.assign(new Error(message), { code: 'CONFIG' });
}

function positive(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw configError(`${name} must be a whole number above 0, not "${raw}"`);
  return v;
}

/** null when WEFT_TRACING_ENDPOINT is unset or empty (tracing off). Throws (code CONFIG) on a value that does not parse. */
export function tracingFromEnv(env: Env): TracingSettings | null {
  const endpoint = env.WEFT_TRACING_ENDPOINT?.trim();
  if (!endpoint) return null;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw configError(`WEFT_TRACING_ENDPOINT must be a URL (http://collector:4318), not "${endpoint}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw configError(`WEFT_TRACING_ENDPOINT must be an http or https URL, not "${endpoint}"`);
  const protocolText = env.WEFT_TRACING_PROTOCOL?.trim() || DEFAULT_TRACING.protocol;
  if (protocolText !== 'http/protobuf' && protocolText !== 'http/json') throw configError(`WEFT_TRACING_PROTOCOL must be http/protobuf or http/json, not "${protocolText}"`);
  const protocol: OtlpProtocol = protocolText;
  const ratioText = env.WEFT_TRACING_SAMPLING_RATIO;
  const samplingRatio = ratioText === undefined || ratioText === '' ? DEFAULT_TRACING.samplingRatio : parseRatio(ratioText);
  if (samplingRatio === undefined) throw configError(`WEFT_TRACING_SAMPLING_RATIO must be a number from 0 to 1, not "${ratioText}"`);
  const maxQueueSize = positive(env, 'WEFT_TRACING_MAX_QUEUE_SIZE', DEFAULT_TRACING.maxQueueSize);
  return {
    endpoint,
    protocol,
    samplingRatio,
    maxQueueSize,
    maxExportBatchSize: Math.min(maxQueueSize, positive(env, 'WEFT_TRACING_MAX_EXPORT_BATCH_SIZE', DEFAULT_TRACING.maxExportBatchSize)),
    scheduledDelayMs: positive(env, 'WEFT_TRACING_SCHEDULED_DELAY_MS', DEFAULT_TRACING.scheduledDelayMs),
    exportTimeoutMs: positive(env, 'WEFT_TRACING_EXPORT_TIMEOUT_MS', DEFAULT_TRACING.exportTimeoutMs),
  };
}

/** The OTLP traces URL for a configured endpoint. */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
  return url.toString();
}
