// What every command gets: the runtime's environment, the parsed configuration and the log.
import type { CniApiPath, PodAddRequest, PodIdentity } from '../../api/cni.ts';
import { callAgent, type AgentReply } from '../agent-client.ts';
import type { CniEnv } from '../env.ts';
import type { Logger } from '../log.ts';
import type { NetConf } from '../netconf.ts';
import type { PodNetwork } from '../prev-result.ts';

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

/** What ADD and CHECK tell the agent: the pod, its attachment and its network from prevResult. */
export function podRequest(env: CniEnv, pod: PodIdentity, net: PodNetwork): PodAddRequest {
  return { pod, containerId: env.containerId, ifname: env.ifname, netns: env.netns, ips: net.ips, hostInterface: net.hostInterface };
}
