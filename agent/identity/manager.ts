// Keeps one certificate per workload identity the node needs, fetched from the controller's CA.
//
// - Each identity gets a fresh key and CSR per issuance; the certificate is renewed at half its
//   lifetime (a little earlier, with jitter, so that a node's identities do not all renew at once).
// - A failed fetch is retried with exponential backoff; the current certificate keeps being served
//   until a new one arrives (it stays valid for the other half of its life).
// - Identities no longer needed are dropped: timers stop, in-flight fetches are abandoned.
// - secureContextFor() is what the HBONE client and server use on every new connection: a lookup,
//   no parsing. The TLS context is built once when a certificate arrives.
//
// The transport to the controller is injected (FetchCertificate), so this file knows nothing about it.

import type tls from 'node:tls';
import { WorkloadCertificate } from './certificate.ts';
import { generateKeyAndCsr } from './csr.ts';
import { IdentityError } from './errors.ts';
import { parseSpiffeId } from './spiffe.ts';

export type FetchedCertificate = { chainPem: string; trustBundlePem: string };

/** Sends the CSR for `identity` to the CA. Should honour `signal` (abandoned or timed out). */
export type FetchCertificate = (identity: string, csrPem: string, signal: AbortSignal) => Promise<FetchedCertificate>;

export type CertificateState =
  | 'pending' // no certificate yet (first fetch in flight or backing off after a failure)
  | 'ready' // a valid certificate, renewal not due
  | 'renewing' // a valid certificate is served while a new one is fetched or retried
  | 'expired'; // the last certificate expired before a new one arrived

/** What the admin endpoint shows. Never key material. */
export type CertificateStatus = {
  identity: string;
  state: CertificateState;
  serialNumber?: string;
  notBefore?: string;
  notAfter?: string;
  /** When the next fetch starts (renewal or retry), if one is scheduled. */
  nextAttemptAt?: string;
  failures: number;
  lastError?: { code: string; message: string; at: string };
};

export type CertificateEvent =
  | { type: 'issued'; identity: string; serialNumber: string; notAfter: Date; renewAt: Date }
  | { type: 'fetch-failed'; identity: string; code: string; message: string; failures: number; retryAt: Date }
  | { type: 'expired'; identity: string; serialNumber: string }
  | { type: 'removed'; identity: string };

export type CertificateManagerOptions = {
  fetch: FetchCertificate;
  /** Fraction of the lifetime after which to renew. Default 0.5. */
  renewAt?: number;
  /** Renewal happens up to this fraction of the lifetime earlier than renewAt. Default 0.05. */
  renewJitter?: number;
  /** First retry delay after a failed fetch; doubles per failure. Default 1 s. */
  retryInitialDelayMs?: number;
  /** Cap on the retry delay. Default 30 s. */
  retryMaxDelayMs?: number;
  /** A fetch that has not answered after this long counts as failed. Default 30 s. */
  fetchTimeoutMs?: number;
  /** Issuance, failure and expiry notifications, for logs and metrics. */
  onEvent?: (event: CertificateEvent) => void;
};

type Waiter = { resolve: (certificate: WorkloadCertificate) => void; reject: (err: Error) => void };

type Entry = {
  readonly identity: string;
  current: WorkloadCertificate | undefined;
  fetching: AbortController | undefined;
  failures: number;
  lastError: { code: string; message: string; at: Date } | undefined;
  nextAttemptAt: Date | undefined;
  timer: NodeJS.Timeout | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  waiters: Set<Waiter>;
  removed: boolean;
};

// setTimeout fires immediately for delays above 2^31-1 ms (about 24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;

export class CertificateManager {
  readonly #fetch: FetchCertificate;
  readonly #renewAt: number;
  readonly #renewJitter: number;
  readonly #retryInitialDelayMs: number;
  readonly #retryMaxDelayMs: number;
  readonly #fetchTimeoutMs: number;
  readonly #onEvent: (event: CertificateEvent) => void;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(options: CertificateManagerOptions) {
    this.#fetch = options.fetch;
    this.#renewAt = options.renewAt ?? 0.5;
    this.#renewJitter = options.renewJitter ?? 0.05;
    this.#retryInitialDelayMs = options.retryInitialDelayMs ?? 1000;
    this.#retryMaxDelayMs = options.retryMaxDelayMs ?? 30_000;
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? 30_000;
    this.#onEvent = options.onEvent ?? (() => {});
    if (!(this.#renewAt > 0 && this.#renewAt < 1)) throw new RangeError(`renewAt must be in (0, 1), got ${this.#renewAt}`);
    if (!(this.#renewJitter >= 0 && this.#renewJitter < this.#renewAt)) {
      throw new RangeError(`renewJitter must be in [0, renewAt), got ${this.#renewJitter}`);
    }
    if (!(this.#retryInitialDelayMs > 0 && this.#retryMaxDelayMs >= this.#retryInitialDelayMs)) {
      throw new RangeError('retry delays must be positive with max >= initial');
    }
  }

  /** Makes the managed set exactly `identities`: fetches new ones, drops the rest. */
  setIdentities(identities: Iterable<string>): void {
    this.#assertOpen();
    const wanted = new Set<string>();
    for (const identity of identities) {
      parseSpiffeId(identity);
      wanted.add(identity);
    }
    for (const identity of [...this.#entries.keys()]) if (!wanted.has(identity)) this.remove(identity);
    for (const identity of wanted) this.add(identity);
  }

  add(identity: string): void {
    this.#assertOpen();
    parseSpiffeId(identity);
    if (this.#entries.has(identity)) return;
    const entry: Entry = {
      identity,
      current: undefined,
      fetching: undefined,
      failures: 0,
      lastError: undefined,
      nextAttemptAt: undefined,
      timer: undefined,
      expiryTimer: undefined,
      waiters: new Set(),
      removed: false,
    };
    this.#entries.set(identity, entry);
    void this.#refresh(entry);
  }

  remove(identity: string): void {
    const entry = this.#entries.get(identity);
    if (!entry) return;
    this.#entries.delete(identity);
    this.#retire(entry, new IdentityError('IDENTITY_REMOVED', `${identity} is no longer managed`));
    this.#onEvent({ type: 'removed', identity });
  }

  identities(): string[] {
    return [...this.#entries.keys()];
  }

  /** The current, unexpired certificate, or undefined. */
  certificateFor(identity: string): WorkloadCertificate | undefined {
    const current = this.#entries.get(identity)?.current;
    return current && Date.now() < current.notAfter.getTime() ? current : undefined;
  }

  /** TLS 1.3 context presenting the identity's certificate and trusting the bundle. */
  secureContextFor(identity: string): tls.SecureContext | undefined {
    return this.certificateFor(identity)?.secureContext;
  }

  /** Resolves with the identity's certificate once it has one. */
  whenReady(identity: string, signal?: AbortSignal): Promise<WorkloadCertificate> {
    const entry = this.#entries.get(identity);
    if (!entry) return Promise.reject(new IdentityError('IDENTITY_REMOVED', `${identity} is not managed`));
    const current = this.certificateFor(identity);
    if (current) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        entry.waiters.delete(waiter);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const waiter: Waiter = {
        resolve: (certificate) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(certificate);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.waiters.add(waiter);
    });
  }

  snapshot(): CertificateStatus[] {
    const now = Date.now();
    return [...this.#entries.values()]
      .sort((a, b) => (a.identity < b.identity ? -1 : 1))
      .map((entry) => {
        const { current } = entry;
        const status: CertificateStatus = { identity: entry.identity, state: stateOf(entry, now), failures: entry.failures };
        if (current) {
          status.serialNumber = current.serialNumber;
          status.notBefore = current.notBefore.toISOString();
          status.notAfter = current.notAfter.toISOString();
        }
        if (entry.nextAttemptAt) status.nextAttemptAt = entry.nextAttemptAt.toISOString();
        if (entry.lastError) status.lastError = { ...entry.lastError, at: entry.lastError.at.toISOString() };
        return status;
      });
  }

  /**
   * Fetches now every certificate whose last fetch failed, instead of when its backoff ends. For
   * when the reason for the failures is known to be gone (the controller answers again): a
   * backoff grown while it was away would otherwise keep a restarted agent without certificates,
   * refusing its pods' inbound tunnels, for up to retryMaxDelayMs. Returns how many it started.
   */
  retryFailedNow(): number {
    let started = 0;
    for (const entry of this.#entries.values()) {
      if (entry.removed || entry.fetching || entry.failures === 0) continue;
      // Already due (a retry just scheduled): rescheduling would not make it any sooner.
      if (entry.nextAttemptAt && entry.nextAttemptAt.getTime() <= Date.now()) continue;
      this.#schedule(entry, 0);
      started += 1;
    }
    return started;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      this.#retire(entry, new IdentityError('MANAGER_CLOSED', 'certificate manager closed'));
    }
    this.#entries.clear();
  }

  async #refresh(entry: Entry): Promise<void> {
    entry.timer = undefined;
    entry.nextAttemptAt = undefined;
    const abandon = new AbortController();
    entry.fetching = abandon;
    const signal = AbortSignal.any([abandon.signal, AbortSignal.timeout(this.#fetchTimeoutMs)]);
    try {
      const { keyPem, csrPem } = await generateKeyAndCsr(entry.identity);
      const fetched = await untilAborted(this.#fetch(entry.identity, csrPem, signal), signal);
      if (entry.removed) return;
      this.#install(entry, WorkloadCertificate.fromIssued({ identity: entry.identity, keyPem, ...fetched }));
    } catch (err) {
      if (!entry.removed) this.#failed(entry, err);
    } finally {
      if (entry.fetching === abandon) entry.fetching = undefined;
    }
  }

  #install(entry: Entry, certificate: WorkloadCertificate): void {
    entry.current = certificate;
    entry.failures = 0;
    entry.lastError = undefined;
    const now = Date.now();
    const lifetime = certificate.notAfter.getTime() - certificate.notBefore.getTime();
    const fraction = this.#renewAt - this.#renewJitter * Math.random();
    // A floor keeps a certificate that arrives already past its renewal point (tiny lifetime, large
    // backdating) from turning into a fetch loop.
    const delay = Math.max(certificate.notBefore.getTime() + lifetime * fraction - now, this.#retryInitialDelayMs);
    this.#schedule(entry, delay);
    clearTimeout(entry.expiryTimer);
    entry.expiryTimer = timer(() => {
      entry.expiryTimer = undefined;
      this.#onEvent({ type: 'expired', identity: entry.identity, serialNumber: certificate.serialNumber });
    }, certificate.notAfter.getTime() - now);
    for (const waiter of entry.waiters) waiter.resolve(certificate);
    entry.waiters.clear();
    this.#onEvent({
      type: 'issued',
      identity: entry.identity,
      serialNumber: certificate.serialNumber,
      notAfter: certificate.notAfter,
      renewAt: entry.nextAttemptAt as Date,
    });
  }

  #failed(entry: Entry, err: unknown): void {
    entry.failures += 1;
    const code = errorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    entry.lastError = { code, message, at: new Date() };
    const backoff = Math.min(this.#retryMaxDelayMs, this.#retryInitialDelayMs * 2 ** (entry.failures - 1));
    // "Equal jitter": between half and all of the backoff, so retrying agents spread out.
    const delay = backoff / 2 + (backoff / 2) * Math.random();
    this.#schedule(entry, delay);
    this.#onEvent({ type: 'fetch-failed', identity: entry.identity, code, message, failures: entry.failures, retryAt: entry.nextAttemptAt as Date });
  }

  #schedule(entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    entry.nextAttemptAt = new Date(Date.now() + delayMs);
    entry.timer = timer(() => void this.#refresh(entry), delayMs);
  }

  #retire(entry: Entry, reason: IdentityError): void {
    entry.removed = true;
    clearTimeout(entry.timer);
    clearTimeout(entry.expiryTimer);
    entry.fetching?.abort(reason);
    for (const waiter of entry.waiters) waiter.reject(reason);
    entry.waiters.clear();
  }

  #assertOpen(): void {
    if (this.#closed) throw new IdentityError('MANAGER_CLOSED', 'certificate manager closed');
  }
}

function stateOf(entry: Entry, now: number): CertificateState {
  const { current } = entry;
  if (!current) return 'pending';
  if (now >= current.notAfter.getTime()) return 'expired';
  if (entry.fetching || entry.failures > 0) return 'renewing';
  return 'ready';
}

function errorCode(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return 'FETCH_TIMEOUT';
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'FETCH_FAILED';
}

// Timers are not unref'd: renewing a certificate is work the process must stay up for. close()
// clears them.
function timer(callback: () => void, delayMs: number): NodeJS.Timeout {
  return setTimeout(callback, Math.min(Math.max(delayMs, 0), MAX_TIMER_MS));
}

/** Settles with `promise`, or rejects with the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // Abandoned: whatever it settles to goes nowhere, and a rejection nobody handles would end the
    // process (an agent closing or timing out a fetch while its key was being generated).
    promise.catch(() => {});
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reasonOf(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

function reasonOf(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}
