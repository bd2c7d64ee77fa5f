// What a stopping agent does with its node: keep Weft installed (the default: fail closed), or
// take it off (the CNI entry and binary, then the redirect table) because Weft is being removed
// from the cluster. Only two facts together say the latter: no newer agent process has taken the
// node over (an upgrade runs the successor beside us, handover.ts), and the watch has positively
// seen the agent's DaemonSet deleted or being deleted. Anything less certain keeps the node
// meshed; docs/install.md's manual cleanup is the fallback for that case.
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
}

export function decideOnStop(f: StopFacts): StopDecision {
  if (f.successor) return { uninstall: false, reason: `agent process ${f.successor.pid} has taken the node over (an upgrade)` };
  const ds = f.daemonSet;
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
