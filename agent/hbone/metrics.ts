// Metrics of the HBONE tunnel server that no connection report carries: hostile or unprovable
// input that the server absorbed instead of serving.
import { Counter } from 'prom-client';
import { registry } from '../metrics.ts';

/** Source-pod claims in `baggage` that were ignored, by why (source-claim.ts). */
export const sourceClaimsIgnored = new Counter({
  name: 'weft_hbone_source_claims_ignored_total',
  help: 'Source pods named in tunnel baggage that the peer certificate and address did not prove',
  labelNames: ['reason'],
  registers: [registry],
});
