// Deciding "meshed?" when the agent cannot answer. A meshed pod must not start without its
// redirection (fail closed, the runtime retries); a pod that is not meshed must not be held
// hostage by an agent restart. The API server is the tie-breaker; without it, fail closed.
import type { PodIdentity } from '../../api/cni.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import type { CommandContext } from './context.ts';

export async function passUnlessMeshed(ctx: CommandContext, pod: PodIdentity, agentProblem: string): Promise<void> {
  const { settings } = ctx.conf;
  if (settings.kubernetes === null) {
    throw new CniError(
      CNI_ERROR.TRY_AGAIN_LATER,
      `weft agent unavailable (${agentProblem}) and no Kubernetes API access is configured to tell whether the pod is meshed`,
    );
  }
  const { decideMeshedFromApi } = await import('../kube-client.ts');
  let decision;
  try {
    decision = await decideMeshedFromApi(settings.kubernetes, pod, settings.timeoutMs);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new CniError(
      CNI_ERROR.TRY_AGAIN_LATER,
      `weft agent unavailable (${agentProblem}) and the Kubernetes API could not tell whether the pod is meshed (${String(code)}: ${(err as Error).message})`,
    );
  }
  if (decision.meshed) {
    throw new CniError(
      CNI_ERROR.TRY_AGAIN_LATER,
      `pod is meshed (${decision.reason}) but the weft agent is unavailable (${agentProblem}); refusing to start it without redirection`,
    );
  }
  ctx.log.info('agent unavailable; pod is not meshed, passing through', { agentProblem, decision: decision.reason });
}
