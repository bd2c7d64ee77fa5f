// STATUS (spec 1.1): ready to service ADD exactly when the agent is.
import { CNI_API_PATHS, parseStatusResponse } from '../../api/cni.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import { askAgent, type Command } from './context.ts';

export const status: Command = async ({ conf }) => {
  const reply = await askAgent(conf, CNI_API_PATHS.status);
  if (reply.kind === 'unavailable') throw new CniError(CNI_ERROR.PLUGIN_NOT_AVAILABLE, `weft agent unavailable: ${reply.reason}`);
  let answer;
  try {
    answer = parseStatusResponse(reply.body);
  } catch (err) {
    throw new CniError(CNI_ERROR.AGENT_PROTOCOL, `agent status answer (HTTP ${reply.status}): ${(err as Error).message}`);
  }
  if (!answer.ready) throw new CniError(CNI_ERROR.PLUGIN_NOT_AVAILABLE, `weft agent not ready: ${answer.reason}`);
  return undefined;
};
