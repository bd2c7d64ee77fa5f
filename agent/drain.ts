// How an agent process stops. A successor (an upgrade) or nobody takes new connections from now
// on; the ones this process carries run to their end or to the deadline (WEFT_DRAIN_SECONDS). The
// rules and the CNI plugin stay (fail closed): the node is never left unmeshed by an agent that
// stops — unless Weft is being removed from the cluster (kube/stop-decision.ts).
import type { Server } from 'node:http';
import type { AgentConfig } from './config.ts';
import type { DataPath } from './data-plane.ts';
import type { AgentSocket, HandoverRedirector } from './handover.ts';
import type { CertificateManager } from './identity/manager.ts';
import type { DaemonSetWatch } from './kube/daemonset-watch.ts';
import { decideAfterSuccessor, decideOnStop, type SuccessorOutcome } from './kube/stop-decision.ts';
import { log } from './log.ts';
import type { NodeCni } from './node-cni.ts';
import type { Readiness } from './readiness.ts';
import type { ServiceCapture } from './redirect/service-capture.ts';
import type { SyncClient } from './sync/client.ts';
import { uninstall } from './uninstall.ts';

/** The longest an old process waits for its successor's stop decision (kube/stop-decision.ts). */
export const SUCCESSOR_DECISION_MS = 30_000;

/** How long an agent that took Weft off its node still accepts other nodes' tunnels. */
export const UNINSTALL_ACCEPT_MS = 5000;

export interface StoppingAgent {
  cfg: AgentConfig;
  readiness: Readiness;
  redirector: HandoverRedirector;
  serviceCapture: ServiceCapture;
  agentSocket: AgentSocket;
  ownDaemonSet: DaemonSetWatch | undefined;
  cni: NodeCni;
  dataPlane: DataPath;
  endpoints: { metrics: Server; admin: Server; health: Server };
  sync: SyncClient;
  certificates: CertificateManager;
  /** Resolves once the checkpoint being written, if any, is on disk. */
  checkpointed: () => Promise<void>;
  /** Timers of the running agent (gauges). */
  timers: NodeJS.Timeout[];
}

export async function drainAndStop(a: StoppingAgent, signal: string): Promise<void> {
  const { cfg, dataPlane } = a;
  // What the watch knew when the signal came, before the list at stop refreshes it: whether a
  // decision rested on the watch or on that list is the first question about a node left meshed.
  const ds = a.ownDaemonSet?.snapshot();
  log('info', 'stop signal', { pid: process.pid, signal, ...(ds ? { daemonSet: { state: ds.state, since: ds.since, watching: ds.watching, ...(ds.lastError ? { lastError: ds.lastError } : {}) } } : {}) });
  a.readiness.draining = true;
  a.redirector.handOver();
  a.serviceCapture.stop();
  // A stopping process keeps nothing chained: its successor, if any, has a watcher of its own,
  // and during `helm uninstall` the successor itself may be taking the entry out right now (a
  // pod replaced by an upgrade is deleted together with its successor's when its DaemonSet goes).
  await a.cni.watcher.close();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), cfg.drainMs)));
  const successor = await a.agentSocket.successor();
  // The watch may lag the SIGTERM, so ask once more; with a successor too: whether the DaemonSet
  // is going tells an upgrade from an uninstall that stops both processes of the node.
  await a.ownDaemonSet?.confirm();
  let decision = decideOnStop({ successor, daemonSet: a.ownDaemonSet?.snapshot() ?? null });
  await a.ownDaemonSet?.close();
  if (decision.awaitSuccessor && successor) {
    log('info', 'waiting for the successor to decide about the node', { pid: process.pid, successor: successor.pid, reason: decision.reason });
    const outcome = await successorDecision(a, successor, Math.min(cfg.drainMs, SUCCESSOR_DECISION_MS));
    decision = decideAfterSuccessor(decision, outcome);
  }
  // Published before it is acted on: an older process of this node may be waiting for it.
  a.readiness.stopDecision = { uninstall: decision.uninstall, reason: decision.reason };
  if (decision.uninstall) {
    log('info', 'Weft is being removed from the cluster: taking it off the node', { pid: process.pid, reason: decision.reason });
    // A checkpoint being written would outlive the removal of the node's state.
    await a.checkpointed();
    await uninstall(cfg, a.redirector);
  } else {
    log('info', 'leaving the node meshed', { pid: process.pid, reason: decision.reason });
  }
  if (!decision.uninstall) {
    const waited = await successorServing(a, cfg.drainMs);
    if (waited.ms > 0) log('info', 'kept accepting until the successor served', { pid: process.pid, ...waited });
  } else {
    // The other nodes' agents take their tables down at about the same time, not at once: until
    // they have, they still tunnel their pods' new connections to this node's 15008, and a
    // listener closed now would refuse them (seen on real nodes: a node-2 pod's connection reset
    // 190 ms after node-1's agent stopped accepting). This node captures nothing any more.
    const ms = Math.min(cfg.drainMs, UNINSTALL_ACCEPT_MS);
    await new Promise((r) => setTimeout(r, ms));
    log('info', 'kept accepting while the other nodes take Weft off', { pid: process.pid, ms });
  }
  // The pid tells two processes of one node apart in the node's log during an upgrade.
  log('info', 'draining', { pid: process.pid, signal, deadlineSeconds: cfg.drainMs / 1000, openConnections: (await dataPlane.openConnections().catch(() => [])).length });
  for (const t of a.timers) clearInterval(t);
  // The node's metrics and admin endpoints are the successor's from now on; health stays.
  for (const s of [a.endpoints.metrics, a.endpoints.admin]) {
    s.close();
    s.closeAllConnections();
  }
  const drained = Promise.all([dataPlane.drain(), a.cni.close(5000)]);
  const outcome = await Promise.race([drained.then(() => 'drained' as const), deadline]);
  clearTimeout(timer);
  // Counted as the access log counts them: a tunnel's streams one by one.
  const reset = outcome === 'drained' ? 0 : (await dataPlane.openConnections().catch(() => [])).length;
  await dataPlane.close({ reset: outcome === 'deadline' });
  a.sync.stop();
  a.certificates.close();
  a.endpoints.health.close();
  a.endpoints.health.closeAllConnections();
  await a.agentSocket.close();
  await a.checkpointed();
  log('info', 'drained', { pid: process.pid, outcome, seconds: Math.round(performance.now() - started) / 1000, connectionsReset: reset });
}

/**
 * Waits (up to `limitMs`) while a successor runs but does not serve yet; meanwhile this process
 * keeps accepting. On a real upgrade the old pod goes NotReady as soon as the new process starts
 * (both answer the node's probe port, and the old one answers with its successor's readiness), so
 * the DaemonSet controller deletes it at once; if it stopped accepting then, the node would refuse
 * its pods' new connections until the successor was ready (seconds).
 */
export async function successorServing(a: { agentSocket: Pick<AgentSocket, 'successor'> }, limitMs: number): Promise<{ ms: number; successor?: string }> {
  const started = performance.now();
  for (;;) {
    const successor = await a.agentSocket.successor();
    const ms = Math.round(performance.now() - started);
    if (!successor) return { ms };
    if (!successor.notReady || ms >= limitMs) return { ms, successor: `pid ${successor.pid}${successor.notReady ? ` still not ready: ${successor.notReady}` : ' ready'}` };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits (up to `limitMs`) for the successor's stop decision on the agent socket. Gone means three
 * answers in a row found no successor: one slow answer on a loaded node is not an exit.
 */
export async function successorDecision(a: { agentSocket: Pick<AgentSocket, 'successor'> }, first: { pid: number }, limitMs: number, pollMs = 100): Promise<SuccessorOutcome> {
  const started = performance.now();
  let pid = first.pid;
  let missing = 0;
  let last = 'no answer';
  for (;;) {
    const s = await a.agentSocket.successor();
    if (s?.stopDecision) return { pid: s.pid, decided: s.stopDecision };
    if (s) {
      pid = s.pid;
      missing = 0;
      last = s.notReady ?? (s.draining ? 'draining' : 'serving');
    } else if (++missing >= 3) {
      return { pid, gone: true };
    }
    if (performance.now() - started >= limitMs) return { pid, undecided: last };
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
