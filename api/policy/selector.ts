// Which workloads a policy applies to, shared by the controller (status: how many workloads a
// policy selects), the agent (which policies apply to a destination) and the CLI.
//
// Label selectors have Kubernetes' own semantics (apimachinery labels.Selector): every matchLabels
// pair and every matchExpressions requirement must hold; `NotIn` and `DoesNotExist` hold when the
// key is absent; an empty selector selects everything.
import type { Workload } from '../agent-sync.ts';
import type { LabelSelector, LabelSelectorRequirement, PolicyScope } from './model.ts';

/** The part of either compiled policy kind that says where it applies. */
export interface ScopedPolicy {
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly selector?: LabelSelector;
}

/**
 * A policy of scope `mesh` is mesh-wide only in the install namespace; anywhere else it counts as
 * its own namespace's, so that whoever may write policy in one namespace never governs another
 * (the controller refuses such a policy; this is the reader not relying on that alone).
 */
export function isMeshWide(p: ScopedPolicy, installNamespace: string): boolean {
  return p.scope === 'mesh' && p.namespace === installNamespace;
}

/** Whether a policy applies to a workload. A selector, when present, filters in every scope. */
export function policySelects(p: ScopedPolicy, w: Pick<Workload, 'namespace' | 'labels'>, installNamespace: string): boolean {
  if (!isMeshWide(p, installNamespace) && p.namespace !== w.namespace) return false;
  return p.selector === undefined || matchesLabelSelector(p.selector, w.labels);
}

export function matchesLabelSelector(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const key in sel.matchLabels) {
    if (labelOf(labels, key) !== sel.matchLabels[key]) return false;
  }
  for (const req of sel.matchExpressions) {
    if (!matchesRequirement(req, labels)) return false;
  }
  return true;
}

/** True when the selector has no requirement at all, i.e. selects everything. */
export function isEmptySelector(sel: LabelSelector): boolean {
  for (const _ in sel.matchLabels) return false;
  return sel.matchExpressions.length === 0;
}

function matchesRequirement(req: LabelSelectorRequirement, labels: Record<string, string>): boolean {
  const value = labelOf(labels, req.key);
  switch (req.operator) {
    case 'In':
      return value !== undefined && req.values.includes(value);
    case 'NotIn':
      return value === undefined || !req.values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    default:
      // An operator this code does not know selects nothing rather than everything.
      return false;
  }
}

// Own properties only: a label named `constructor` or `__proto__` must not find Object.prototype.
function labelOf(labels: Record<string, string>, key: string): string | undefined {
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}
