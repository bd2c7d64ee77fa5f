// What a stopping agent does with its node: keep Weft installed (the default: fail closed), or
// take it off (the CNI entry and binary, then the redirect table) because Weft is being removed
// from the cluster. Only two facts together say the latter: no newer agent process has taken the
// node over (an upgrade runs the successor beside us, handover.ts), and the watch has positively
// seen the agent's DaemonSet deleted or being deleted. Anything less certain keeps the node
// meshed; docs/install.md's manual cleanup is the fallback for that case.
//
// One case needs both processes of a node: `helm uninstall` in the middle of a roll. The
// DaemonSet's foreground deletion stops the old process and its successor together (a surge roll
// can keep both Ready side by side for minutes). The successor decides for the node; but its facts
// can be poorer than the old process's (a pod still starting when the deletion came has no watch
// yet, and once the pre-delete hook ends, no RBAC to ask with), and if it then keeps the node
// meshed while the old process defers to it, nobody takes Weft off. So an old process that sees
// the DaemonSet going waits for its successor's decision (published on the agent socket) and takes
// Weft off only if the successor leaves the node meshed or goes without deciding: exactly one of
// the two does it.
import type { DaemonSetWatchSnapshot } from './daemonset-watch.ts';

export interface StopFacts {
  /** The agent process that took the node over from this one, if any. */
  successor: { pid: number } | undefined;
  /** The watch on the agent's own DaemonSet; null when WEFT_DAEMONSET is not set. */
  daemonSet: Pick<DaemonSetWatchSnapshot, 'namespace' | 'name' | 'state' | 'lastError'> | null;
}

export interface StopDecision {
  uninstall: boolean;
  /** For the log: why. */
  reason: string;
  /**
   * A successor has the node but the DaemonSet is going, so the successor is being stopped too:
   * wait for its decision (decideAfterSuccessor) before settling on `uninstall: false`.
   */
  awaitSuccessor?: boolean;
}

/** What the successor did, as the stopping process saw it on the agent socket. */
export type SuccessorOutcome =
  | { pid: number; decided: StopDecision }
  /** It stopped answering (exited, or its socket went) without a decision seen. */
  | { pid: number; gone: true }
  /** Still running and undecided when the wait ended. */
  | { pid: number; undecided: string };

export function decideOnStop(f: StopFacts): StopDecision {
  const ds = f.daemonSet;
  if (f.successor) {
    if (ds?.state === 'deleting' || ds?.state === 'deleted') {
      return { uninstall: false, awaitSuccessor: true, reason: `agent process ${f.successor.pid} has the node, and DaemonSet ${ds.namespace}/${ds.name} is ${ds.state === 'deleted' ? 'deleted' : 'being deleted'}: it decides` };
    }
    return { uninstall: false, reason: `agent process ${f.successor.pid} has taken the node over (an upgrade)` };
  }
  if (ds === null) return { uninstall: false, reason: 'WEFT_DAEMONSET is not set: no DaemonSet is watched' };
  const name = `DaemonSet ${ds.namespace}/${ds.name}`;
  switch (ds.state) {
    case 'deleted':
      return { uninstall: true, reason: `${name} was deleted` };
    case 'deleting':
      return { uninstall: true, reason: `${name} is being deleted` };
    case 'present':
      return { uninstall: false, reason: `${name} is still there` };
    case 'unknown':
      return { uninstall: false, reason: `the state of ${name} is not known${ds.lastError ? ` (${ds.lastError})` : ''}` };
  }
}

/**
 * The decision of a process that waited for its successor (`own.awaitSuccessor`): only one of the
 * two takes Weft off. A successor still undecided at the end of the wait keeps it meshed: it may
 * yet decide itself, and an upgrade's successor is never stopped under.
 */
export function decideAfterSuccessor(own: StopDecision, s: SuccessorOutcome): StopDecision {
  if (!own.awaitSuccessor) return own;
  if ('decided' in s) {
    if (s.decided.uninstall) return { uninstall: false, reason: `agent process ${s.pid}, stopping too, takes Weft off the node (${s.decided.reason})` };
    return { uninstall: true, reason: `${own.reason}; it left the node meshed (${s.decided.reason})` };
  }
  if ('gone' in s) return { uninstall: true, reason: `${own.reason}; it went without a decision` };
  return { uninstall: false, reason: `${own.reason}; it has not decided yet (${s.undecided})` };
}
