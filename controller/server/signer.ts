// What the agent API needs from the mesh CA, and the adapter to controller/ca/'s MeshCa.
//
// The identity comes from the controller's authorization decision, never from the CSR: the CA
// ignores the names a CSR asks for and writes the one SPIFFE ID it is given.
import type { MeshCa } from '../ca/ca.ts';

export interface SignIdentity {
  /** `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>` */
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
}

export interface SignedChain {
  /** Leaf first, then any intermediates. */
  certChainPem: string;
  trustBundlePem: string;
  notAfter: Date;
}

/**
 * Signs a workload CSR for an identity the caller has authorized. Errors with `code`
 * CSR_INVALID, KEY_UNSUPPORTED or IDENTITY_INVALID are the requester's fault (400); anything else
 * is the controller's (500).
 */
export interface WorkloadSigner {
  sign(csrPem: string, identity: SignIdentity): Promise<SignedChain>;
}

export class SignerMismatchError extends Error {
  readonly code = 'SIGNER_MISMATCH';
  override readonly name = 'SignerMismatchError';
}

export function meshCaSigner(ca: MeshCa): WorkloadSigner {
  return {
    async sign(csrPem, identity) {
      const signed = await ca.sign(csrPem, { namespace: identity.namespace, serviceAccount: identity.serviceAccount });
      // The CA derives the ID from its own trust domain; a controller configured with another
      // one would hand out certificates no peer expects. Refuse rather than issue those.
      if (signed.spiffeId !== identity.spiffeId) {
        throw new SignerMismatchError(`the CA issues ${signed.spiffeId}, the controller expected ${identity.spiffeId}: trust domains differ`);
      }
      return { certChainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem, notAfter: signed.notAfter };
    },
  };
}
