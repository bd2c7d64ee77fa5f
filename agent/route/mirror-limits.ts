// The bounds on RequestMirror copies (mirror.ts), apart from the mirror itself so that the agent's
// configuration (agent/config.ts) can name them without loading the routed path.

/** The bounds on copies: agent configuration (WEFT_ROUTE_MIRROR_*, chart values agent.routes.mirror), one set per data plane. */
export interface MirrorLimits {
  /** Request bodies up to this size are mirrored; a request with a larger one is not. */
  maxBodyBytes: number;
  /** Copies in flight at once (per data-plane thread); beyond, a copy is dropped. */
  maxInFlight: number;
  /** A copy without response headers by then is cancelled. */
  timeoutMs: number;
}

/** 64 KiB is the body the routed path keeps for a retry anyway (retry.ts MAX_RETRY_BODY). */
export const DEFAULT_MIRROR_LIMITS: Readonly<MirrorLimits> = { maxBodyBytes: 64 * 1024, maxInFlight: 128, timeoutMs: 10_000 };

/**
 * What the agent accepts (helm/weft/values.schema.json says the same). Copies in flight hold their
 * bodies, so maxInFlight × maxBodyBytes is the memory they may take at worst: 8 MiB by default,
 * 16 GiB at both maximums, which no agent's memory limit allows; raise one, not both.
 */
export const MIRROR_LIMIT_BOUNDS = {
  maxBodyBytes: { min: 0, max: 4 * 1024 * 1024 },
  maxInFlight: { min: 1, max: 4096 },
  timeoutSeconds: { min: 0.001, max: 300 },
} as const;
