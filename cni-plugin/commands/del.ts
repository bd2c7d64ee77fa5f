// DEL: ask the agent to release the pod. Idempotent and tolerant, as the spec asks: no netns, no
// prevResult, a second DEL, or an agent that is down all succeed, because a failed DEL blocks
// the pod's deletion and the agent reconciles its enrolments from the API when it restarts.
// The one failure reported is an agent that is up and could not release: a stale redirection
// could capture the next pod that gets this IP, so the runtime should retry.
import { CNI_API_PATHS, parsePodDelResponse } from '../../api/cni.ts';
import type { PodDelRequest } from '../../api/cni.ts';
import { readAgentAnswer } from '../agent-answer.ts';
import { podFromArgs } from '../env.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import { podNetworkFromPrevResult } from '../prev-result.ts';
import { askAgent, type Command } from './context.ts';

export const del: Command = async ({ env, conf, log }) => {
  const pod = podFromArgs(env.args);
  if (pod === null || conf.settings.excludeNamespaces.includes(pod.namespace)) return undefined;

  let ips: string[] = [];
  if (conf.prevResult !== null) {
    try {
      ips = podNetworkFromPrevResult(conf.prevResult, env.ifname).ips;
    } catch (err) {
      log.warn('ignoring unreadable prevResult on DEL', { error: (err as Error).message });
    }
  }
  const request: PodDelRequest = {
    pod,
    containerId: env.containerId,
    ifname: env.ifname,
    netns: env.netns === '' ? null : env.netns,
    ips,
  };
  const reply = await askAgent(conf, CNI_API_PATHS.podDel, request);
  try {
    const outcome = readAgentAnswer(reply, parsePodDelResponse);
    if (outcome.kind === 'ok') log.info(`DEL: ${outcome.value.result}`);
    else log.warn('agent unavailable for DEL; it reconciles enrolments when it is back', { reason: outcome.reason });
  } catch (err) {
    if (err instanceof CniError && err.code === CNI_ERROR.AGENT_FAILED) throw err;
    // Contract disagreement (version skew): retrying cannot help, and the agent reconciles.
    log.error('agent refused DEL; succeeding anyway', { error: (err as Error).message });
  }
  return undefined;
};
