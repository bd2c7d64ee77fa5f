// A stand-in for the running agent that drainAndStop() (drain.ts) is handed, for tests of the stop
// decision and the uninstall: every part does nothing unless a test gives its own.
import type { AgentConfig } from '../config.ts';
import type { StoppingAgent } from '../drain.ts';

/** The agent's config for a stop: its state dir, drain deadline and CNI directories. */
export function stopConfig(o: { stateDir: string; drainMs: number; binDir: string; confDir: string }): AgentConfig {
  return { stateDir: o.stateDir, drainMs: o.drainMs, cni: { binDir: o.binDir, confDir: o.confDir, kubernetes: null } } as unknown as AgentConfig;
}

export function stoppingAgent(cfg: AgentConfig, parts: Record<string, unknown> = {}): StoppingAgent {
  const closed = { close: () => undefined, closeAllConnections: () => undefined };
  return {
    cfg,
    readiness: { draining: false },
    redirector: { handOver: () => undefined, remove: () => Promise.resolve() },
    serviceCapture: { stop: () => undefined },
    agentSocket: { successor: () => Promise.resolve(), close: () => Promise.resolve() },
    ownDaemonSet: undefined,
    cni: { watcher: { close: () => Promise.resolve() }, close: () => Promise.resolve() },
    dataPlane: { openConnections: () => Promise.resolve([]), drain: () => Promise.resolve(), close: () => Promise.resolve() },
    endpoints: { metrics: closed, admin: closed, health: closed },
    sync: { stop: () => undefined },
    certificates: { close: () => undefined },
    checkpointed: () => Promise.resolve(),
    timers: [],
    ...parts,
  } as unknown as StoppingAgent;
}
