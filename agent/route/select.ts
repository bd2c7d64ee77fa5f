// Choices made per request: which backendRef (by weight), which endpoint of its Service (power of
// two choices on the fewest outstanding requests), and whether one more retry fits the budget.
// Randomness comes in as a function so that tests can drive it.
import type { Service } from '../../api/agent-sync.ts';
import type { RouteBackend } from '../../api/route.ts';
import type { Address } from '../native/sockopt.ts';

export type Random = () => number;

/**
 * A backendRef by weight: `r` in [0, 1) lands in the cumulative weights. Weight 0 is never
 * chosen; all weights 0 gives undefined (the Gateway API answers 500).
 */
export function pickWeighted<T extends Pick<RouteBackend, 'weight'>>(backends: readonly T[], r: number): T | undefined {
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total <= 0) return undefined;
  let x = r * total;
  for (const b of backends) {
    if (b.weight <= 0) continue;
    if (x < b.weight) return b;
    x -= b.weight;
  }
  // r * total rounded up to total: the last positive weight.
  for (let i = backends.length - 1; i >= 0; i--) if ((backends[i] as T).weight > 0) return backends[i];
  return undefined;
}

/**
 * Power of two choices: two distinct candidates at random, the one with fewer outstanding
 * requests (the first on a tie). Spreads load like least-outstanding without a global scan, and
 * without herding every client onto the one endpoint that just became idle.
 */
export function pickP2C<T>(candidates: readonly T[], outstanding: (c: T) => number, random: Random): T | undefined {
  const n = candidates.length;
  if (n === 0) return undefined;
  if (n === 1) return candidates[0];
  const i = Math.floor(random() * n) % n;
  let j = Math.floor(random() * (n - 1)) % (n - 1);
  if (j >= i) j++;
  const a = candidates[i] as T;
  const b = candidates[j] as T;
  return outstanding(b) < outstanding(a) ? b : a;
}

type Endpoint = Service['endpoints'][number];

/**
 * A backendRef's (or a mirror's) Service port and its ready endpoints, looked up by key; undefined
 * when the Service or the port is not known. `addrOf` is the `ip:port` an endpoint is counted by.
 */
export function backendEndpoints(
  store: { service(key: string): Service | undefined },
  service: string,
  port: number,
): { svc: Service; ready: Endpoint[]; target: (e: Endpoint) => Address; addrOf: (e: Endpoint) => string } | undefined {
  const svc = store.service(service);
  const sp = svc?.ports.find((p) => p.port === port && p.protocol === 'TCP');
  if (!svc || !sp) return undefined;
  const target = (e: Endpoint): Address => ({ ip: e.ip, port: e.ports[sp.name] as number });
  return { svc, ready: svc.endpoints.filter((e) => e.ready && e.ports[sp.name] !== undefined), target, addrOf: (e) => `${e.ip}:${e.ports[sp.name]}` };
}

/** Outstanding requests per endpoint address, shared by every routed connection of the agent. */
export class Outstanding {
  readonly #n = new Map<string, number>();

  get(addr: string): number {
    return this.#n.get(addr) ?? 0;
  }

  /** Counts one request to `addr`; call the returned function once when it ends. */
  begin(addr: string): () => void {
    this.#n.set(addr, this.get(addr) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = this.get(addr) - 1;
      if (left <= 0) this.#n.delete(addr);
      else this.#n.set(addr, left);
    };
  }
}

/** Weft's budget for a rule that retries, when no XBackendTrafficPolicy sets its backend's. */
export const DEFAULT_RETRY_BUDGET = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 } as const;

/**
 * Retries may add at most `ratio` of the requests of the last `windowMs` on top of them, plus
 * `minPerSecond` so that a quiet service can still retry. Without a budget, retries multiply the
 * load on a backend that fails because it is overloaded.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #minPerSecond: number;
  readonly #windowMs: number;
  #requests: number[] = [];
  #retries: number[] = [];
  #trimmed = 0;

  constructor(o: { ratio?: number; minPerSecond?: number; windowMs?: number } = {}) {
    this.#ratio = o.ratio ?? DEFAULT_RETRY_BUDGET.ratio;
    this.#minPerSecond = o.minPerSecond ?? DEFAULT_RETRY_BUDGET.minPerSecond;
    this.#windowMs = o.windowMs ?? DEFAULT_RETRY_BUDGET.windowMs;
  }

  request(now: number): void {
    this.#requests.push(now);
    // Only a retry trimmed the window before: a rule that never failed kept every request's time.
    // At most once a second, so that a busy rule does not copy its window on every request.
    if (now - this.#trimmed >= 1000) {
      this.#trimmed = now;
      this.#requests = dropBefore(this.#requests, now - this.#windowMs);
    }
  }

  /** Takes one retry from the budget if there is one left. */
  tryRetry(now: number): boolean {
    const since = now - this.#windowMs;
    this.#requests = dropBefore(this.#requests, since);
    this.#retries = dropBefore(this.#retries, since);
    const allowed = this.#requests.length * this.#ratio + (this.#minPerSecond * this.#windowMs) / 1000;
    if (this.#retries.length >= allowed) return false;
    this.#retries.push(now);
    return true;
  }
}

function dropBefore(times: number[], since: number): number[] {
  let i = 0;
  while (i < times.length && (times[i] as number) < since) i++;
  return i === 0 ? times : times.slice(i);
}

/**
 * Passive outlier ejection on connection failures: an endpoint whose connections failed
 * `threshold` times in a row (refused, unreachable, or its node's agent could not reach it) is
 * skipped for `baseMs`, doubled on each ejection in a row up to `maxMs`. Only failures to connect
 * count, not HTTP statuses: a 503 is the application's answer and a rule's `retry` decides about
 * it, while a failed connect says the endpoint is not there (an EndpointSlice that still lists a
 * pod of a node that went away). One success clears the count and the doubling.
 */
export class Ejections {
  readonly #threshold: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #state = new Map<string, { failures: number; ejections: number; until: number }>();

  constructor(o: { threshold?: number; baseMs?: number; maxMs?: number } = {}) {
    this.#threshold = o.threshold ?? 3;
    this.#baseMs = o.baseMs ?? 10_000;
    this.#maxMs = o.maxMs ?? 300_000;
  }

  ejected(addr: string, now: number): boolean {
    const s = this.#state.get(addr);
    return s !== undefined && s.until > now;
  }

  /** Counts a failed connection; true when it ejects the endpoint. */
  failure(addr: string, now: number): boolean {
    // Endpoints that failed and then went away leave entries behind: dropped once many pile up.
    if (this.#state.size >= 4096) for (const [k, v] of this.#state) if (v.until <= now) this.#state.delete(k);
    const s = this.#state.get(addr) ?? { failures: 0, ejections: 0, until: 0 };
    this.#state.set(addr, s);
    if (s.until > now) return false;
    s.failures++;
    if (s.failures < this.#threshold) return false;
    s.until = now + Math.min(this.#maxMs, this.#baseMs * 2 ** s.ejections);
    s.ejections++;
    // Back in after the ejection, one more failure ejects it again (for longer).
    s.failures = this.#threshold - 1;
    return true;
  }

  success(addr: string): void {
    this.#state.delete(addr);
  }

  /**
   * The candidates not ejected; all of them when every one is (sending to a maybe-dead endpoint
   * beats answering 503 without trying), so ejection never empties a backend.
   */
  usable<T>(candidates: readonly T[], addr: (c: T) => string, now: number): readonly T[] {
    const left = candidates.filter((c) => !this.ejected(addr(c), now));
    return left.length > 0 ? left : candidates;
  }
}
