// TokenReview (authentication.k8s.io/v1) against the API server, as the agent API's
// authenticator needs it. The controller's own service account needs `create tokenreviews`.
import { AuthenticationV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { TokenReviewResult, TokenReviewer } from '../server/agent-auth.ts';
import { apiErrorSummary } from '../../api/kube-errors.ts';

export interface KubeTokenReviewerOptions {
  /**
   * Audiences the token must be issued for; the API server's own when omitted. Agents whose
   * tokens are requested for a dedicated audience (e.g. "weft-controller") cannot have them
   * replayed against the API server, and API-server tokens cannot be replayed here.
   */
  audiences?: string[];
}

export function kubeTokenReviewer(kubeConfig: KubeConfig, opts: KubeTokenReviewerOptions = {}): TokenReviewer {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  return {
    async review(token: string): Promise<TokenReviewResult> {
      let review;
      try {
        review = await api.createTokenReview({
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(opts.audiences?.length ? { audiences: opts.audiences } : {}) } },
        });
      } catch (err) {
        // The status and the server's message only: the library's own message carries whole
        // response headers. (The request, which holds the token, is in neither.)
        throw new Error(`TokenReview failed: ${apiErrorSummary(err)}`, { cause: err });
      }
      const status = review.status ?? {};
      return {
        authenticated: status.authenticated === true,
        ...(status.user ? { user: status.user } : {}),
        ...(status.audiences ? { audiences: status.audiences } : {}),
        ...(status.error ? { error: status.error } : {}),
      };
    },
  };
}
