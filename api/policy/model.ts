// The compiled form of Weft's policy CRDs: what the controller sends agents (as agent-sync
// resources) and what the evaluator reads. The user-facing spec types are generated from the CRD
// schema (api/policy/types.gen.ts); this file is the normalized result of validating a spec:
//
// - every list the spec may omit is present (empty = "not constrained");
// - identities are full SPIFFE IDs or patterns (`spiffe://td/ns/a/*`, `*/sa/b`, `*`);
// - methods are upper-case; hosts and header names lower-case;
// - a `from[].namespaceSelector` is resolved by the controller to the namespace names it matches
//   now (`selectedNamespaces`), and recompiled when namespace labels change, so that agents never
//   need namespace labels.
//
// Matching semantics (the same as Istio's AuthorizationPolicy, which users know):
//   rule matches  = (from is empty OR any from entry matches) AND (to is empty OR any to entry
//                   matches) AND every `when` condition matches;
//   entry matches = every field it sets matches; a field matches when any of its values does;
//                   a `not…` field matches when none of its values does. Exception: `headers` is
//                   a list of conditions that must ALL hold (as in HTTPRoute), while `notHeaders`
//                   holds when none of its headers matches.
//   A policy with no rules matches nothing: an ALLOW policy without rules is "allow nothing".
// Decision order: any DENY rule that matches denies; AUDIT rules that match are recorded; then, if
// any ALLOW policy selects the workload, some ALLOW rule must match or the connection/request is
// denied; with no ALLOW policy, it is allowed.

export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT';
export type MtlsMode = 'STRICT' | 'PERMISSIVE';

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

/** Kubernetes' LabelSelector, normalized: both parts present. Empty selects everything. */
export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: LabelSelectorRequirement[];
}

export interface IPBlock {
  /** IPv4 or IPv6 CIDR, canonical form (`10.0.0.0/8`). */
  cidr: string;
  except: string[];
}

export interface CompiledSource {
  identities: string[];
  notIdentities: string[];
  namespaces: string[];
  notNamespaces: string[];
  /** Set when the spec entry had a namespaceSelector: the names of the namespaces it matched. */
  selectedNamespaces?: string[];
  ipBlocks: IPBlock[];
  notIpBlocks: IPBlock[];
}

export interface HeaderMatch {
  /** Lower-case header name. */
  name: string;
  /** Values (exact, `prefix*`, `*suffix`, `*`); empty = the header is present. */
  values: string[];
}

export interface CompiledTarget {
  /** Destination (container) port numbers, or port names (resolved per workload at evaluation). */
  ports: (number | string)[];
  notPorts: (number | string)[];
  methods: string[];
  notMethods: string[];
  /** `/exact`, `/prefix/*`, `*suffix`, `*`; matched against the normalized path without query. */
  paths: string[];
  notPaths: string[];
  hosts: string[];
  notHosts: string[];
  headers: HeaderMatch[];
  notHeaders: HeaderMatch[];
}

/** Keys a `when` condition may test. `request.*` keys are L7. */
export type ConditionKey =
  | 'source.ip'
  | 'source.principal'
  | 'source.namespace'
  | 'destination.ip'
  | 'destination.port'
  | 'request.method'
  | 'request.path'
  | 'request.host'
  | `request.headers[${string}]`;

export interface CompiledCondition {
  key: ConditionKey;
  values: string[];
  notValues: string[];
}

export interface CompiledRule {
  /** The rule's `name` from the spec, or `rules[i]`. Names the rule in logs and metrics. */
  name: string;
  from: CompiledSource[];
  to: CompiledTarget[];
  when: CompiledCondition[];
  /** True when any part of the rule needs HTTP (methods, paths, hosts, headers, request.* keys). */
  l7: boolean;
}

/** Which workloads a policy applies to. */
export type PolicyScope =
  /** In the install namespace: every meshed workload in the mesh (selector, if any, filters). */
  | 'mesh'
  /** Every meshed workload in the policy's namespace. */
  | 'namespace'
  /** Workloads in the policy's namespace matching the selector. */
  | 'workload';

/** What every compiled policy says of itself: which object, which generation, whom it applies to. */
export interface CompiledPolicyHead {
  /** `<namespace>/<name>` */
  key: string;
  namespace: string;
  name: string;
  /** metadata.generation of the spec this was compiled from. */
  generation: number;
  scope: PolicyScope;
  /** Present for scope 'workload', and for 'mesh' when the mesh-wide policy has a selector. */
  selector?: LabelSelector;
}

export interface CompiledAccessPolicy extends CompiledPolicyHead {
  action: PolicyAction;
  rules: CompiledRule[];
}

export interface PortMtls {
  port: number;
  mode: MtlsMode;
}

export interface CompiledMeshTLSPolicy extends CompiledPolicyHead {
  mode: MtlsMode;
  /** Per-port overrides (destination container port). */
  ports: PortMtls[];
  /** metadata.creationTimestamp: among policies of equal scope, the oldest wins. */
  createdAt: string;
}

/** One validation problem, with a JSON path into the object (`spec.rules[1].to[0].paths[0]`). */
export interface PolicyProblem {
  path: string;
  message: string;
}

export type CompileResult<T> = { ok: true; policy: T; warnings: PolicyProblem[] } | { ok: false; problems: PolicyProblem[] };

export const POLICY_GROUP = 'weft.dev';
export const POLICY_VERSION = 'v1alpha1';
export const ACCESS_POLICY_PLURAL = 'accesspolicies';
export const MESH_TLS_POLICY_PLURAL = 'meshtlspolicies';

/** Condition types on every Weft policy's status. */
export const CONDITION = { accepted: 'Accepted', resolvedRefs: 'ResolvedRefs', programmed: 'Programmed' } as const;

/** Application protocols whose ports the agent parses as HTTP (L7 rules apply there). */
export const HTTP_APP_PROTOCOLS: ReadonlySet<string> = new Set(['http', 'http2', 'grpc', 'grpc-web', 'h2c']);
