// One connection pool to the API server per client identity, instead of one per request.
//
// @kubernetes/client-node 2.x builds a new undici Agent for every request (config.js,
// applySecurityAuthentication → createDispatcher), so every status write, Event, Lease renewal and
// TokenReview opens a new TCP connection and TLS handshake and parses the client key again. In a
// profile of a policy fan-out to 1,000 agents that was 0.6 of 6.9 busy CPU-s of the controller's
// event loop (createSecureContext alone 0.44 s), and a reconnect storm does 1,000 TokenReviews.
// Here the dispatcher is kept for as long as what it was built from (cluster, CA, client
// certificate and key, which the library re-reads per request, so rotation still takes effect) is
// the same; a replaced one is closed once its requests (watches included) have ended.
// Not switched on in loadKubeConfig yet: controller/README.md says why (the flood test's control).
import { createHash } from 'node:crypto';
import type { AgentOptions } from 'node:https';
import type { Cluster, KubeConfig } from '@kubernetes/client-node';

interface Dispatcher {
  close(): Promise<void>;
}
type CreateDispatcher = (cluster: Cluster | null, agentOptions: AgentOptions) => Dispatcher | undefined;

function fingerprint(cluster: Cluster | null, o: AgentOptions): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([cluster?.name, cluster?.server, cluster?.proxyUrl, o.rejectUnauthorized, o.servername, o.passphrase]));
  for (const v of [o.ca, o.cert, o.key, o.pfx]) {
    const parts = v === undefined ? [] : Array.isArray(v) ? v : [v];
    h.update(`|${parts.length}|`);
    for (const p of parts) h.update(typeof p === 'string' || Buffer.isBuffer(p) ? p : JSON.stringify(p));
  }
  return h.digest('hex');
}

/**
 * Makes `kc`'s API clients share connections. Returns `kc`. Leaves it as it is when the library
 * no longer has the method this relies on (it is private): correct, only slower.
 */
export function reuseConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher?: CreateDispatcher };
  const create = target.createDispatcher;
  if (typeof create !== 'function') return kc;
  let current: { key: string; dispatcher: Dispatcher | undefined } | undefined;
  target.createDispatcher = (cluster, agentOptions) => {
    const key = fingerprint(cluster, agentOptions);
    if (current?.key === key) return current.dispatcher;
    const old = current?.dispatcher;
    current = { key, dispatcher: create.call(kc, cluster, agentOptions) };
    old?.close().catch(() => {});
    return current.dispatcher;
  };
  return kc;
}
