// Turns what the agent answered into either a checked value, "the agent cannot decide now"
// (which each command handles in its own way), or a CNI error.
import { CniContractError, parseErrorBody } from '../api/cni.ts';
import type { AgentReply } from './agent-client.ts';
import { CNI_ERROR, CniError } from './errors.ts';

export type AgentOutcome<T> = { kind: 'ok'; value: T } | { kind: 'unavailable'; reason: string };

export function readAgentAnswer<T>(reply: AgentReply, parse: (v: unknown) => T): AgentOutcome<T> {
  if (reply.kind === 'unavailable') return reply;
  if (reply.status === 200) {
    try {
      return { kind: 'ok', value: parse(reply.body) };
    } catch (err) {
      if (err instanceof CniContractError) throw new CniError(CNI_ERROR.AGENT_PROTOCOL, `agent answer ${err.message}`);
      throw err;
    }
  }
  let code: string;
  let message: string;
  try {
    ({ code, message } = parseErrorBody(reply.body).error);
  } catch {
    throw new CniError(CNI_ERROR.AGENT_PROTOCOL, `agent answered HTTP ${reply.status} without an error body`);
  }
  // Not ready yet (e.g. still syncing from the controller): as good as unreachable for now.
  if (code === 'NOT_READY') return { kind: 'unavailable', reason: `agent not ready: ${message}` };
  if (code === 'ENROLLER_FAILED') throw new CniError(CNI_ERROR.AGENT_FAILED, message);
  throw new CniError(CNI_ERROR.AGENT_REJECTED, `${code}: ${message}`);
}
