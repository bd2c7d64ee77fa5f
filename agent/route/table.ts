// The routes in force for one client: an index over the store's routes, rebuilt when the store
// changes, read per request (so a route change reaches requests on connections already open).
//
// GAMMA's two kinds of route for a Service: a producer route lives in the Service's namespace and
// applies to every client; a consumer route lives in another namespace and applies only to
// clients in that namespace. A client with consumer routes for a Service uses those and not the
// producer's.
import type { CompiledRoute } from '../../api/route.ts';
import type { StateStore } from '../state/store.ts';
import { flatten, type MatchEntry } from './match.ts';

export interface ServiceRoutes {
  producer: CompiledRoute[];
  consumers: Map<string, CompiledRoute[]>;
}

/** Routes by parent Service key, split into the producer's and each consumer namespace's. */
export function indexRoutes(routes: Iterable<CompiledRoute>): Map<string, ServiceRoutes> {
  const by = new Map<string, ServiceRoutes>();
  for (const r of routes) {
    for (const parent of new Set(r.parents.map((p) => p.service))) {
      const svcNs = parent.slice(0, parent.indexOf('/'));
      let s = by.get(parent);
      if (!s) by.set(parent, (s = { producer: [], consumers: new Map() }));
      if (r.namespace === svcNs) s.producer.push(r);
      else {
        const list = s.consumers.get(r.namespace) ?? [];
        list.push(r);
        s.consumers.set(r.namespace, list);
      }
    }
  }
  return by;
}

/**
 * The routes that apply to a client in `clientNamespace` on one Service port (its namespace's
 * consumer routes if it has any, else the producer's), and which kind they are.
 */
export function routesFor(s: ServiceRoutes | undefined, clientNamespace: string, serviceKey: string, port: number): { kind: 'consumer' | 'producer'; routes: CompiledRoute[] } {
  const covers = (r: CompiledRoute) => r.parents.some((p) => p.service === serviceKey && (p.port === undefined || p.port === port));
  const consumer = (s?.consumers.get(clientNamespace) ?? []).filter(covers);
  return consumer.length > 0 ? { kind: 'consumer', routes: consumer } : { kind: 'producer', routes: (s?.producer ?? []).filter(covers) };
}

export class RouteTable {
  readonly #store: StateStore;
  #byService = new Map<string, ServiceRoutes>();
  #entries = new Map<string, MatchEntry[]>();
  #version = 0;

  constructor(store: StateStore) {
    this.#store = store;
    this.#rebuild();
    store.onChange(() => this.#rebuild());
  }

  /** Bumped on every rebuild (a test or the admin dump can see that a change arrived). */
  get version(): number {
    return this.#version;
  }

  #rebuild(): void {
    this.#byService = indexRoutes(this.#store.routes());
    this.#entries = new Map();
    this.#version++;
  }

  /** Whether connections to this Service port are parsed at all. */
  routed(serviceKey: string, port: number): boolean {
    const s = this.#byService.get(serviceKey);
    if (!s) return false;
    const covers = (r: CompiledRoute) => r.parents.some((p) => p.service === serviceKey && (p.port === undefined || p.port === port));
    if (s.producer.some(covers)) return true;
    for (const list of s.consumers.values()) if (list.some(covers)) return true;
    return false;
  }

  /**
   * The sorted entries for a client in `clientNamespace`; empty when no route applies to it.
   * GRPCRoutes are entries only for gRPC requests (`grpc`): a plain HTTP request on a port that has
   * only GRPCRoutes goes to the Service as if it had no route, not to a 404.
   */
  entries(clientNamespace: string, serviceKey: string, port: number, grpc = false): MatchEntry[] {
    const k = `${clientNamespace}\n${serviceKey}\n${port}\n${grpc}`;
    const cached = this.#entries.get(k);
    if (cached) return cached;
    const routes = routesFor(this.#byService.get(serviceKey), clientNamespace, serviceKey, port).routes;
    const e = flatten(grpc ? routes : routes.filter((r) => r.kind === 'HTTPRoute'));
    this.#entries.set(k, e);
    return e;
  }
}
