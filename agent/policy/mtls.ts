// Which mTLS mode a destination port requires. The most specific MeshTLSPolicy that selects the
// workload wins (workload > namespace > mesh); among equally specific ones the oldest (creation
// time, then key), so that adding a policy never silently overrides an older one of equal rank.
// Within the winner, an override for the port wins over the policy's mode.
import type { Workload } from '../../api/agent-sync.ts';
import type { CompiledMeshTLSPolicy, MtlsMode } from '../../api/policy/model.ts';
import { isMeshWide, policySelects } from '../../api/policy/selector.ts';

export interface MtlsResolution {
  readonly mode: MtlsMode;
  /** The MeshTLSPolicy that set the mode; absent when the mesh default applies. */
  readonly policy?: string;
}

const MESH_DEFAULT: Readonly<Record<MtlsMode, MtlsResolution>> = {
  STRICT: Object.freeze({ mode: 'STRICT' }),
  PERMISSIVE: Object.freeze({ mode: 'PERMISSIVE' }),
};

/** A policy's answers, built once per policy object. */
interface Resolved {
  readonly mode: MtlsResolution;
  readonly ports: ReadonlyMap<number, MtlsResolution>;
}

const resolved = new WeakMap<CompiledMeshTLSPolicy, Resolved>();

export function winningMtlsPolicy(candidates: readonly CompiledMeshTLSPolicy[], w: Workload, installNamespace: string): CompiledMeshTLSPolicy | undefined {
  let best: CompiledMeshTLSPolicy | undefined;
  let bestRank = 0;
  for (const p of candidates) {
    if (!policySelects(p, w, installNamespace)) continue;
    const rank = specificity(p, installNamespace);
    if (best === undefined || rank > bestRank || (rank === bestRank && older(p, best))) {
      best = p;
      bestRank = rank;
    }
  }
  return best;
}

export function mtlsModeOf(winner: CompiledMeshTLSPolicy | undefined, port: number, meshDefault: MtlsMode): MtlsResolution {
  if (winner === undefined) return MESH_DEFAULT[meshDefault];
  let r = resolved.get(winner);
  if (!r) {
    const policy = winner.key;
    r = {
      mode: Object.freeze({ mode: winner.mode, policy }),
      ports: new Map(winner.ports.map((o) => [o.port, Object.freeze({ mode: o.mode, policy })])),
    };
    resolved.set(winner, r);
  }
  return r.ports.get(port) ?? r.mode;
}

/** workload (3) > namespace (2) > mesh (1); a `mesh` policy outside the install namespace is local. */
function specificity(p: CompiledMeshTLSPolicy, installNamespace: string): number {
  if (isMeshWide(p, installNamespace)) return 1;
  return p.scope === 'workload' || (p.scope === 'mesh' && p.selector !== undefined) ? 3 : 2;
}

function older(a: CompiledMeshTLSPolicy, b: CompiledMeshTLSPolicy): boolean {
  const ta = Date.parse(a.createdAt);
  const tb = Date.parse(b.createdAt);
  if (ta !== tb && !Number.isNaN(ta) && !Number.isNaN(tb)) return ta < tb;
  return a.key < b.key;
}
