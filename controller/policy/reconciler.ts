// Keeps the store's compiled policies equal to what compile.ts makes of the AccessPolicy and
// MeshTLSPolicy objects in the caches, and remembers each object's verdict for the status writer.
//
// An object whose spec does not compile never disturbs what is in force: the store keeps the last
// generation that compiled (agents go on enforcing it) and the status says the update was refused.
// Deleting the object removes it. A new object that never compiled is simply not enforced.
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
    const result: CompileResult<Resource['value']> =
      kind === 'AccessPolicy' ? compileAccessPolicy(obj as AccessPolicy, ctx) : compileMeshTLSPolicy(obj as MeshTLSPolicy, ctx);
    const generation = obj.metadata?.generation ?? 0;
    const previous = this.#verdicts.get(id);
    let verdict: PolicyVerdict;
    if (result.ok) {
      this.#o.store.upsert({ kind, value: result.policy } as Resource);
      verdict = { kind, key, generation, accepted: true, problems: [], warnings: result.warnings, inForceGeneration: generation };
    } else {
      // The store keeps whatever compiled last; a controller that never saw it valid enforces nothing.
      const inForce = this.#o.store.get({ kind, key }) ? previous?.inForceGeneration : undefined;
      verdict = { kind, key, generation, accepted: false, problems: result.problems, warnings: [], ...(inForce !== undefined ? { inForceGeneration: inForce } : {}) };
      if (!previous || previous.generation !== generation || previous.accepted) {
        this.#log.warn('policy refused', { kind, policy: key, generation, problems: result.problems.map((p) => `${p.path}: ${p.message}`), inForceGeneration: inForce });
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
