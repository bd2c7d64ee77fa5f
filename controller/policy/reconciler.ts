// Keeps the store's compiled policies equal to what compile.ts makes of the AccessPolicy and
// MeshTLSPolicy objects in the caches, and remembers each object's verdict for the status writer.
//
// An object whose spec does not compile never disturbs what is in force: the store keeps the last
// generation that compiled (agents go on enforcing it) and the status says the update was refused.
// Deleting the object removes it. A new object that never compiled is simply not enforced.
//
// The last generation that compiled is also written to the object's status (`lastAccepted`, by the
// status writer), because the store lives only as long as this process: a controller that starts
// while a spec is invalid compiles the status's copy instead, so a restart never turns a refused
// update into "nothing enforced" (which, for a DENY or a narrow ALLOW, would open access).
//
// Level-based like the workload reconciler: an event names a key, and the key is recompiled from
// the caches as they are now. Namespace changes recompile every AccessPolicy, since a
// `from[].namespaceSelector` is resolved to namespace names here, not on the agents.
import type { V1Namespace } from '@kubernetes/client-node';
import type { Resource } from '../../api/agent-sync.ts';
import type { Logger } from '../../api/log.ts';
import { compileAccessPolicy, compileMeshTLSPolicy } from '../../api/policy/compile.ts';
import type { CompileResult, PolicyProblem } from '../../api/policy/model.ts';
import type { AccessPolicy, MeshTLSPolicy } from '../../api/policy/types.gen.ts';
import type { ResourceWatch } from '../kube/resource-watch.ts';
import { objectKey } from '../state/compute.ts';
import type { RevisionedStore } from '../state/store.ts';

export type PolicyKind = 'AccessPolicy' | 'MeshTLSPolicy';

/** What the controller concluded about one policy object, for its status. */
export interface PolicyVerdict {
  kind: PolicyKind;
  key: string;
  /** The generation these problems and warnings are about. */
  generation: number;
  accepted: boolean;
  problems: PolicyProblem[];
  warnings: PolicyProblem[];
  /** The generation agents enforce (the last one that compiled), if any. */
  inForceGeneration?: number;
  /** Its spec, for the status's `lastAccepted`. */
  inForceSpec?: Record<string, unknown>;
}

export interface PolicySources {
  accessPolicies: ResourceWatch<AccessPolicy>;
  meshTLSPolicies: ResourceWatch<MeshTLSPolicy>;
  namespaces: ResourceWatch<V1Namespace>;
}

export interface PolicyReconcilerOptions {
  sources: PolicySources;
  store: RevisionedStore;
  installNamespace: string;
  trustDomain: string;
  log: Logger;
}

export class PolicyReconciler {
  readonly #o: PolicyReconcilerOptions;
  readonly #log: Logger;
  readonly #verdicts = new Map<string, PolicyVerdict>();
  readonly #listeners = new Set<() => void>();
  #stopped = false;

  constructor(o: PolicyReconcilerOptions) {
    this.#o = o;
    this.#log = o.log.child({ component: 'policy-reconciler' });
    const { accessPolicies, meshTLSPolicies, namespaces } = o.sources;
    accessPolicies.onChange((_e, p) => this.#reconcile('AccessPolicy', p.metadata?.namespace ?? '', p.metadata?.name ?? ''));
    meshTLSPolicies.onChange((_e, p) => this.#reconcile('MeshTLSPolicy', p.metadata?.namespace ?? '', p.metadata?.name ?? ''));
    namespaces.onChange(() => {
      for (const p of accessPolicies.list()) this.#reconcile('AccessPolicy', p.metadata?.namespace ?? '', p.metadata?.name ?? '');
    });
  }

  /** The verdict on one object (undefined when the object does not exist). */
  verdict(kind: PolicyKind, key: string): PolicyVerdict | undefined {
    return this.#verdicts.get(`${kind}/${key}`);
  }

  /** Called after any verdict changed. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Recompiles every object and removes what is gone. */
  resyncAll(): void {
    for (const kind of ['AccessPolicy', 'MeshTLSPolicy'] as const) {
      const seen = new Set<string>();
      for (const p of this.#watch(kind).list()) {
        const ns = p.metadata?.namespace ?? '';
        const name = p.metadata?.name ?? '';
        seen.add(objectKey(ns, name));
        this.#reconcile(kind, ns, name);
      }
      for (const key of this.#o.store.keys(kind)) if (!seen.has(key)) this.#reconcile(kind, ...splitKey(key));
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  #watch(kind: PolicyKind): ResourceWatch<AccessPolicy | MeshTLSPolicy> {
    return kind === 'AccessPolicy' ? this.#o.sources.accessPolicies : this.#o.sources.meshTLSPolicies;
  }

  #reconcile(kind: PolicyKind, namespace: string, name: string): void {
    if (this.#stopped || !namespace || !name) return;
    const key = objectKey(namespace, name);
    const id = `${kind}/${key}`;
    const obj = this.#watch(kind).get(name, namespace);
    if (!obj) {
      this.#o.store.remove({ kind, key });
      if (this.#verdicts.delete(id)) this.#changed();
      return;
    }
    const ctx = {
      installNamespace: this.#o.installNamespace,
      trustDomain: this.#o.trustDomain,
      namespaces: this.#o.sources.namespaces.list().map((ns) => ({ name: ns.metadata?.name ?? '', labels: ns.metadata?.labels ?? {} })),
    };
    const compile = (o: AccessPolicy | MeshTLSPolicy): CompileResult<Resource['value']> =>
      kind === 'AccessPolicy' ? compileAccessPolicy(o as AccessPolicy, ctx) : compileMeshTLSPolicy(o as MeshTLSPolicy, ctx);
    const result = compile(obj);
    const generation = obj.metadata?.generation ?? 0;
    const previous = this.#verdicts.get(id);
    let verdict: PolicyVerdict;
    if (result.ok) {
      this.#o.store.upsert({ kind, value: result.policy } as Resource);
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      verdict = { kind, key, generation, accepted: true, problems: [], warnings: result.warnings, inForceGeneration: generation, inForceSpec: spec };
    } else {
      // The store keeps whatever compiled last. A controller that has not seen it valid (it just
      // started) takes the last accepted spec from the status; only a policy that never compiled
      // enforces nothing.
      let inForce = this.#o.store.get({ kind, key }) && previous?.inForceGeneration !== undefined ? { generation: previous.inForceGeneration, spec: previous.inForceSpec } : undefined;
      const saved = obj.status?.lastAccepted;
      if (!inForce && saved && saved.generation < generation) {
        const restored = compile({ ...obj, metadata: { ...obj.metadata, generation: saved.generation }, spec: saved.spec } as AccessPolicy | MeshTLSPolicy);
        if (restored.ok) {
          this.#o.store.upsert({ kind, value: restored.policy } as Resource);
          inForce = { generation: saved.generation, spec: saved.spec };
          this.#log.info('policy restored from its last accepted generation', { kind, policy: key, generation, inForceGeneration: saved.generation });
        }
      }
      verdict = {
        kind,
        key,
        generation,
        accepted: false,
        problems: result.problems,
        warnings: [],
        ...(inForce ? { inForceGeneration: inForce.generation, ...(inForce.spec ? { inForceSpec: inForce.spec } : {}) } : {}),
      };
      if (!previous || previous.generation !== generation || previous.accepted) {
        this.#log.warn('policy refused', { kind, policy: key, generation, problems: result.problems.map((p) => `${p.path}: ${p.message}`), inForceGeneration: inForce?.generation });
      }
    }
    this.#verdicts.set(id, verdict);
    if (!previous || JSON.stringify(previous) !== JSON.stringify(verdict)) this.#changed();
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }
}

function splitKey(key: string): [string, string] {
  const slash = key.indexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}
