// Who may hold which identity. DESIGN.md: the controller signs for an agent only the service
// accounts of pods scheduled on that agent's node. The caller establishes the node from the agent's
// verified token (TokenReview); this function is only the pod-on-node rule, kept pure so the rule
// is tested on its own.

export type IdentityRequest = {
  /** The node the requesting agent runs on, as established by TokenReview. */
  node: string;
  namespace: string;
  serviceAccount: string;
};

/** The fields of a Pod the rule reads (spec.nodeName, metadata.namespace, ...). */
export type PodPlacement = {
  nodeName?: string;
  namespace: string;
  /** spec.serviceAccountName; Kubernetes fills in "default" when a pod names none. */
  serviceAccountName?: string;
  /** status.phase */
  phase?: string;
};

/**
 * True when a pod running that service account is bound to the agent's node and has not
 * finished. Pending pods count (their sandbox is being created and needs the identity at start);
 * Succeeded and Failed pods never send traffic again.
 */
export function authorizeIdentity(request: IdentityRequest, podsOnNode: Iterable<PodPlacement>): boolean {
  if (request.node === '') return false;
  for (const pod of podsOnNode) {
    if (pod.nodeName !== request.node) continue;
    if (pod.namespace !== request.namespace) continue;
    if ((pod.serviceAccountName || 'default') !== request.serviceAccount) continue;
    if (pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
    return true;
  }
  return false;
}
