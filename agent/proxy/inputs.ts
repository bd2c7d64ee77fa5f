// What every proxy path is given: the node's state, where it reports, who decides, and the few
// settings that shape a connection's life. One type for the three directions, so a setting added
// here reaches all of them.
import type { StateStore } from '../state/store.ts';
import type { PolicyEnforcer } from './enforcer.ts';
import type { InspectSettings } from './inspected.ts';
import type { ConnectionReporter } from './report.ts';
import type { RequestTracing } from '../tracing/tracer.ts';
import type { MirrorLimits } from '../route/mirror-limits.ts';

export interface ProxyInputs {
  store: StateStore;
  /** This node's name: which workloads are local. */
  node: string;
  report: ConnectionReporter;
  enforcer: PolicyEnforcer;
  /** Give up on a destination that has not accepted after this long. */
  connectTimeoutMs: number;
  /** Reset connections idle this long in both directions. */
  idleTimeoutMs: number;
  /** L7 limits and path options; the defaults of agent/l7 when absent. */
  l7?: InspectSettings;
  /** Request spans; absent when tracing is off. */
  tracing?: RequestTracing | undefined;
  /** Bounds on RequestMirror copies (route/mirror.ts); route/mirror-limits.ts's defaults when absent. */
  routeMirror?: MirrorLimits;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
