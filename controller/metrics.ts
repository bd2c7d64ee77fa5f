// The controller's Prometheus metrics (prefix weft_controller_), served on :15014/metrics.
// Counters are incremented where things happen; gauges read their value at scrape time from the
// component that owns it, so there is one source of truth and nothing to keep in step.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricSources {
  connectedAgents?: () => number;
  storeRevision?: () => number;
  storeResources?: () => number;
  /** TokenReviews running, and waiting for a slot (server/review-gate.ts). */
  tokenReviewsInFlight?: () => number;
  tokenReviewsQueued?: () => number;
  /** resource → synced */
  watchesSynced?: () => Record<string, boolean>;
}

export interface ControllerMetrics {
  readonly registry: Registry;
  /** Messages pushed on sync streams, by type (snapshot, delta). */
  readonly pushes: Counter<'type'>;
  /** ACKs and NACKs received. */
  readonly replies: Counter<'result'>;
  /** Sync streams refused or ended by the controller, by error code. */
  readonly streamsRefused: Counter<'code'>;
  /** Certificate requests, by result (signed, or the error code). */
  readonly signRequests: Counter<'result'>;
  /** TokenReviews sent to the API server (cache misses), by outcome. */
  readonly tokenReviews: Counter<'outcome'>;
  /** Watch restarts after errors, by resource. */
  readonly watchRestarts: Counter<'resource'>;
  /** Agent API requests and connections refused by a limit before any TokenReview, by limit. */
  readonly agentApiLimited: Counter<'reason'>;
  /** Bearer tokens looked up in the review cache, by result (accepted, refused, miss). */
  readonly tokenCache: Counter<'result'>;
}

export interface MetricsOptions {
  /** Also export the process metrics (CPU, memory, event-loop lag, GC). */
  processMetrics?: boolean;
}

export function createControllerMetrics(sources: MetricSources = {}, opts: MetricsOptions = {}): ControllerMetrics {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'weft_controller_' });

  const gauge = (name: string, help: string, read: (() => number) | undefined): void => {
    if (!read) return;
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  gauge('weft_controller_agents_connected', 'Nodes whose agent has an open sync stream.', sources.connectedAgents);
  gauge('weft_controller_store_revision', 'Current revision of the state pushed to agents.', sources.storeRevision);
  gauge('weft_controller_store_resources', 'Workloads and Services in the state pushed to agents.', sources.storeResources);
  gauge('weft_controller_token_reviews_in_flight', 'TokenReviews sent and not yet answered.', sources.tokenReviewsInFlight);
  gauge('weft_controller_token_reviews_queued', 'TokenReviews waiting for a slot under the concurrency cap.', sources.tokenReviewsQueued);
  if (sources.watchesSynced) {
    const read = sources.watchesSynced;
    new Gauge({
      name: 'weft_controller_watch_synced',
      help: '1 once the watch of a Kubernetes resource has listed everything.',
      labelNames: ['resource'],
      registers: [registry],
      collect() {
        for (const [resource, synced] of Object.entries(read())) this.set({ resource }, synced ? 1 : 0);
      },
    });
  }

  return {
    registry,
    pushes: new Counter({ name: 'weft_controller_sync_pushes_total', help: 'Sync messages sent to agents.', labelNames: ['type'], registers: [registry] }),
    replies: new Counter({ name: 'weft_controller_sync_replies_total', help: 'ACKs and NACKs received from agents.', labelNames: ['result'], registers: [registry] }),
    streamsRefused: new Counter({
      name: 'weft_controller_sync_streams_refused_total',
      help: 'Sync streams refused or ended by the controller, by error code.',
      labelNames: ['code'],
      registers: [registry],
    }),
    signRequests: new Counter({ name: 'weft_controller_sign_requests_total', help: 'Workload certificate requests, by result.', labelNames: ['result'], registers: [registry] }),
    tokenReviews: new Counter({ name: 'weft_controller_token_reviews_total', help: 'TokenReviews sent to the API server, by outcome.', labelNames: ['outcome'], registers: [registry] }),
    watchRestarts: new Counter({ name: 'weft_controller_watch_restarts_total', help: 'Watch restarts after errors, by resource.', labelNames: ['resource'], registers: [registry] }),
    agentApiLimited: new Counter({
      name: 'weft_controller_agent_api_limited_total',
      help: 'Agent API requests and connections refused by a limit before any TokenReview, by limit.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    tokenCache: new Counter({ name: 'weft_controller_token_cache_total', help: 'Bearer tokens looked up in the review cache, by result.', labelNames: ['result'], registers: [registry] }),
  };
}
