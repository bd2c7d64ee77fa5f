// What every command gets: the runtime's environment, the parsed configuration and the log.
import type { CniApiPath } from '../../api/cni.ts';
import { callAgent, type AgentReply } from '../agent-client.ts';
import type { CniEnv } from '../env.ts';
import type { Logger } from '../log.ts';
import type { NetConf } from '../netconf.ts';

export interface CommandContext {
  env: CniEnv;
  conf: NetConf;
  log: Logger;
}

/** A command returns the JSON to print on stdout, or undefined to print nothing. */
export type Command = (ctx: CommandContext) => Promise<unknown>;

/** One call to the node agent with the socket and deadline this plugin was configured with. */
export function askAgent(conf: NetConf, path: CniApiPath, body?: unknown): Promise<AgentReply> {
  return callAgent({
    socketPath: conf.settings.agentSocket,
    method: body === undefined ? 'GET' : 'POST',
    path,
    ...(body === undefined ? {} : { body }),
    timeoutMs: conf.settings.timeoutMs,
  });
}
