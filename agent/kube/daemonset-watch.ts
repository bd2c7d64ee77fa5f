// The agent's watch on its own DaemonSet: when the agent is told to stop, it tells "Weft is being
// removed from the cluster" (helm uninstall: the DaemonSet is gone) from "this process is going
// away" (an upgrade, a node drain, a deleted pod), and only in the first case takes Weft off the
// node (main.ts, stop-decision.ts).
//
// Why a watch, and not only one GET when SIGTERM comes: `helm uninstall` deletes the DaemonSet
// and, within milliseconds, the RoleBindings and the ServiceAccount; only after that does the
// garbage collector delete the agent pods and the kubelet signal them. By then a GET gets 401/403,
// which cannot be told apart from a misconfiguration. A watch opened long before is not
// re-authorized, and usually has the DELETED event by then — but not always: the event and the
// SIGTERM race (an agent on a loaded node once got the SIGTERM first and left its node meshed). So
// the chart's pre-delete hook (agent/pre-delete.ts) marks the DaemonSet deleted and keeps the RBAC
// in place until the agents have stopped, and the agent asks again at SIGTERM (confirm()).
//
// state():
// - 'present'  seen, and not being deleted;
// - 'deleting' seen with metadata.deletionTimestamp (foreground deletion, a finalizer);
// - 'deleted'  seen, then a DELETED event, or a relist that no longer finds it;
// - 'unknown'  never seen: no answer yet, no API server, 401/403, not found.
// A known state stays until the API server says otherwise: a later error (the ServiceAccount gone
// after the deletion, the API server unreachable) sets lastError, never the state. An object that
// was never seen is not taken as deleted when a list does not find it: a wrong name or namespace
// must not make every agent restart take the mesh off its node.
//
// Requests: list with fieldSelector metadata.name=<name> (its resourceVersion and state), then
// watch from that resourceVersion with bookmarks, for timeoutSeconds; resume from the last
// resourceVersion when the API server ends it, relist on 410 Gone, and after any error (broken
// stream, malformed event, HTTP error) relist after a capped backoff. The chart's Role allows
// list and watch of this one name only (helm/weft/templates/agent-rbac.yaml).
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeAccess } from './access.ts';
import { Backoff } from './backoff.ts';
import { KubeApiError } from './errors.ts';
import { openGet, readJson } from './get.ts';
import { LineSplitter } from './json-lines.ts';
import { parseList, parseWatchEvent, type ListHead, type ObjectHead } from './watch-event.ts';

export type DaemonSetState = 'present' | 'deleting' | 'deleted' | 'unknown';

export interface DaemonSetWatchOptions {
  namespace: string;
  name: string;
  access: KubeAccess;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** timeoutSeconds of each watch request: the API server ends it then, and it is resumed. */
  watchSeconds?: number;
  /** Pause after a failure: doubling from firstMs up to maxMs. */
  backoff?: { firstMs: number; maxMs: number };
  /** Longest wait for a list answer, or for a watch's response headers. */
  requestTimeoutMs?: number;
}

/** What the admin dump shows. */
export interface DaemonSetWatchSnapshot {
  namespace: string;
  name: string;
  state: DaemonSetState;
  /** When the state last changed. */
  since: string;
  /** UID of the object last seen. */
  uid?: string;
  /** A watch is open: the state is current. */
  watching: boolean;
  /** Why the state may be stale or unknown; absent while the watch is healthy. */
  lastError?: string;
}

/** A watch that ends this soon without an event counts as a failure (no tight reconnect loop). */
const MIN_HEALTHY_WATCH_MS = 1000;

export class DaemonSetWatch {
  readonly #o: DaemonSetWatchOptions;
  readonly #path: string;
  readonly #selector: string;
  readonly #watchSeconds: number;
  readonly #requestTimeoutMs: number;
  readonly #backoff: Backoff;
  readonly #closing = new AbortController();
  readonly #done: Promise<void>;
  #state: DaemonSetState = 'unknown';
  #since = new Date();
  #uid: string | undefined;
  #resourceVersion = '';
  #watching = false;
  #lastError: string | undefined;

  constructor(o: DaemonSetWatchOptions) {
    this.#o = o;
    this.#path = `/apis/apps/v1/namespaces/${encodeURIComponent(o.namespace)}/daemonsets`;
    this.#selector = `fieldSelector=${encodeURIComponent(`metadata.name=${o.name}`)}`;
    this.#watchSeconds = o.watchSeconds ?? 300;
    this.#requestTimeoutMs = o.requestTimeoutMs ?? 15_000;
    this.#backoff = new Backoff(o.backoff ?? { firstMs: 500, maxMs: 30_000 });
    this.#done = this.#run();
  }

  state(): DaemonSetState {
    return this.#state;
  }

  lastError(): string | undefined {
    return this.#lastError;
  }

  snapshot(): DaemonSetWatchSnapshot {
    return {
      namespace: this.#o.namespace,
      name: this.#o.name,
      state: this.#state,
      since: this.#since.toISOString(),
      ...(this.#uid !== undefined ? { uid: this.#uid } : {}),
      watching: this.#watching,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  /** Stops watching; resolves once no request is left open. The state stays readable. */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.#done;
  }

  get #closed(): boolean {
    return this.#closing.signal.aborted;
  }

  get #label(): string {
    return `${this.#o.namespace}/${this.#o.name}`;
  }

  async #run(): Promise<void> {
    if (this.#o.access.server === null) {
      // Nothing to retry: the environment will not change.
      this.#failed(new KubeApiError('KUBE_CONFIG', 'no API server: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT name none'));
      return;
    }
    let relist = true;
    while (!this.#closed) {
      const started = performance.now();
      let events = 0;
      try {
        if (relist) await this.#list();
        relist = false;
        const end = await this.#watch(() => events++);
        if (end === 'gone') {
          this.#o.log('info', 'the agent DaemonSet watch fell too far behind (410 Gone); listing again', { daemonSet: this.#label });
          relist = true;
        }
        if (events === 0 && performance.now() - started < MIN_HEALTHY_WATCH_MS) await this.#pause();
      } catch (e) {
        if (this.#closed) break;
        this.#failed(e);
        relist = true;
        await this.#pause();
      }
    }
  }

  /**
   * One list now, outside the watch, for a decision that must not rest on a watch that may lag:
   * the agent asks at SIGTERM. The DaemonSet's deletion reaches the watch and, through the garbage
   * collector and the kubelet, the SIGTERM at about the same moment (125 ms apart was measured on
   * a quiet playground), so at SIGTERM the watch may not have it yet. A list without a
   * resourceVersion is a quorum read: it is the API server's current state. During `helm
   * uninstall` the chart's pre-delete hook (agent/pre-delete.ts) has already marked the DaemonSet
   * deleted and keeps the agent's Role until the agents have stopped, so the answer is 'deleting'.
   * Without the hook the Role may be gone by now: any failure leaves the watch's state as it was.
   */
  async confirm(timeoutMs = 3000): Promise<DaemonSetState> {
    if (this.#o.access.server === null) return this.#state;
    try {
      this.#apply(await this.#fetch(timeoutMs));
    } catch (e) {
      const err = e instanceof KubeApiError ? `${e.code}: ${e.message}` : (e as Error).message;
      this.#o.log('warn', 'checking the agent DaemonSet at stop failed; the watch state stands', { daemonSet: this.#label, state: this.#state, error: err });
    }
    return this.#state;
  }

  async #fetch(timeoutMs: number): Promise<ListHead> {
    const what = `list DaemonSet ${this.#label}`;
    return this.#request(what, timeoutMs, async (signal) => {
      const res = await openGet(this.#o.access, `${this.#path}?${this.#selector}`, { what, signal, headersTimeoutMs: timeoutMs });
      return parseList(await readJson(res, what));
    });
  }

  #apply(list: ListHead): void {
    const found = list.items.find((o) => o.name === this.#o.name);
    if (found) this.#observe(found);
    // Seen before and now absent: deleted while no watch was open. Never seen: not a deletion.
    else if (this.#uid !== undefined) this.#set('deleted');
    else throw new KubeApiError('KUBE_NOT_FOUND', `DaemonSet ${this.#label} not found, and never seen: not taken as deleted`);
  }

  async #list(): Promise<void> {
    const list = await this.#fetch(this.#requestTimeoutMs);
    this.#apply(list);
    this.#resourceVersion = list.resourceVersion;
  }

  /** One watch request, until the API server ends it ('ended') or the resourceVersion expired ('gone'). */
  async #watch(onEvent: () => void): Promise<'ended' | 'gone'> {
    const what = `watch DaemonSet ${this.#label}`;
    const query = `${this.#selector}&watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(this.#resourceVersion)}&timeoutSeconds=${this.#watchSeconds}`;
    // The API server ends the watch after timeoutSeconds; a connection that went silent (no
    // reset, e.g. the API server's host vanished) is given up a little after that.
    return this.#request(what, (this.#watchSeconds + 30) * 1000, async (signal) => {
      const res = await openGet(this.#o.access, `${this.#path}?${query}`, { what, signal, headersTimeoutMs: this.#requestTimeoutMs });
      this.#watching = true;
      if (this.#lastError !== undefined) this.#o.log('info', 'watching the agent DaemonSet again', { daemonSet: this.#label, state: this.#state });
      this.#lastError = undefined;
      const lines = new LineSplitter();
      try {
        for await (const chunk of res) {
          for (const line of lines.push(chunk as Buffer)) {
            if (line.trim() === '') continue;
            const event = parseWatchEvent(line);
            if (event.type === 'ERROR') {
              if (event.status.code === 410) return 'gone';
              const { code, reason, message } = event.status;
              throw new KubeApiError('KUBE_WATCH_ERROR', `${what}: the API server ended it: ${code} ${reason}: ${message}`, { status: code });
            }
            onEvent();
            this.#backoff.reset();
            if (event.type === 'BOOKMARK') {
              this.#resourceVersion = event.resourceVersion;
              continue;
            }
            this.#resourceVersion = event.object.resourceVersion;
            if (event.object.name !== this.#o.name) continue;
            if (event.type === 'DELETED') {
              this.#uid = event.object.uid;
              this.#set('deleted');
            } else {
              this.#observe(event.object);
            }
          }
        }
      } catch (e) {
        if (e instanceof KubeApiError) throw e;
        throw new KubeApiError('KUBE_UNREACHABLE', `${what}: the stream broke: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      } finally {
        this.#watching = false;
      }
      if (!res.complete) throw new KubeApiError('KUBE_UNREACHABLE', `${what}: the stream was cut`);
      if (lines.end().trim() !== '') throw new KubeApiError('KUBE_DECODE', `${what}: the stream ended inside an event`);
      return 'ended';
    });
  }

  /** Runs one request with its own deadline; close() aborts it too. */
  async #request<T>(what: string, timeoutMs: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const abort = () => ac.abort();
    this.#closing.signal.addEventListener('abort', abort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    try {
      return await run(ac.signal);
    } catch (e) {
      if (timedOut) throw new KubeApiError('KUBE_TIMEOUT', `${what}: not done within ${timeoutMs} ms`, { cause: e });
      throw e;
    } finally {
      clearTimeout(timer);
      this.#closing.signal.removeEventListener('abort', abort);
    }
  }

  #observe(o: ObjectHead): void {
    this.#uid = o.uid;
    this.#set(o.deletionTimestamp === undefined ? 'present' : 'deleting');
  }

  #set(state: DaemonSetState): void {
    if (state === this.#state) return;
    this.#o.log('info', 'agent DaemonSet', { daemonSet: this.#label, state, was: this.#state, ...(this.#uid !== undefined ? { uid: this.#uid } : {}) });
    this.#state = state;
    this.#since = new Date();
  }

  #failed(e: unknown): void {
    const err = e instanceof KubeApiError ? e : new KubeApiError('KUBE_UNREACHABLE', (e as Error).message, { cause: e });
    const message = `${err.code}: ${err.message}`;
    // Once per distinct failure: an API server away for an hour is one line, not one a minute.
    if (message !== this.#lastError) this.#o.log('warn', 'watching the agent DaemonSet failed; its last known state stands', { daemonSet: this.#label, state: this.#state, error: message });
    this.#lastError = message;
  }

  async #pause(): Promise<void> {
    await sleep(this.#backoff.next(), undefined, { signal: this.#closing.signal }).catch(() => undefined);
  }
}
