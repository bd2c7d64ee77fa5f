// POST /weft.v1/sign: an agent asks for a workload certificate.
//
// DESIGN.md's rule: the CA signs for (namespace, service account) only when the caller is a
// genuine agent (TokenReview, done before this) and at least one unfinished pod with that
// service account is scheduled on the agent's own node, as the informer cache sees it. An agent
// can therefore never obtain an identity of a workload that does not run on its node.
import type { V1Pod } from '@kubernetes/client-node';
import { spiffeId } from '../../api/agent-sync.ts';
import type { SignRequest, SignResponse } from '../../api/agent-sync.ts';
import { authorizeIdentity } from '../ca/authorize.ts';
import type { PodPlacement } from '../ca/authorize.ts';
import type { Logger } from '../../api/log.ts';
import type { AgentIdentity } from './agent-auth.ts';
import { AgentApiError } from './errors.ts';
import type { WorkloadSigner } from './signer.ts';

export interface SignHandlerOptions {
  /** The pods informer cache. */
  pods: { list(namespace?: string): readonly V1Pod[] };
  signer: WorkloadSigner;
  trustDomain: string;
  log: Logger;
}

const CLIENT_ERRORS = new Set(['CSR_INVALID', 'KEY_UNSUPPORTED', 'IDENTITY_INVALID']);

export async function handleSign(req: SignRequest, agent: AgentIdentity, opts: SignHandlerOptions): Promise<SignResponse> {
  const { namespace, serviceAccount } = req;
  const placements = opts.pods.list(namespace).map(placement);
  if (!authorizeIdentity({ node: agent.node, namespace, serviceAccount }, placements)) {
    throw new AgentApiError(
      'NOT_AUTHORIZED_FOR_IDENTITY',
      `no running or pending pod with service account ${namespace}/${serviceAccount} is scheduled on node ${agent.node}`,
    );
  }
  const id = spiffeId(opts.trustDomain, namespace, serviceAccount);
  try {
    const signed = await opts.signer.sign(req.csrPem, { spiffeId: id, namespace, serviceAccount });
    return { certChainPem: signed.certChainPem, trustBundlePem: signed.trustBundlePem, notAfter: signed.notAfter.toISOString() };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && CLIENT_ERRORS.has(code)) {
      throw new AgentApiError(code as 'CSR_INVALID' | 'KEY_UNSUPPORTED' | 'IDENTITY_INVALID', (err as Error).message);
    }
    opts.log.error('signing failed', { node: agent.node, identity: id, error: err });
    throw new AgentApiError('INTERNAL', 'the CA could not sign this request', { cause: err });
  }
}

function placement(pod: V1Pod): PodPlacement {
  return {
    namespace: pod.metadata?.namespace ?? '',
    ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    ...(pod.spec?.serviceAccountName ? { serviceAccountName: pod.spec.serviceAccountName } : {}),
    ...(pod.status?.phase ? { phase: pod.status.phase } : {}),
  };
}
