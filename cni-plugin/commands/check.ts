// CHECK: is the pod's redirection still in place? The spec asks a plugin to fail CHECK when a
// daemon its pods need is missing; a pod that is not meshed needs no agent.
import { CNI_API_PATHS, parsePodCheckResponse } from '../../api/cni.ts';
import { readAgentAnswer } from '../agent-answer.ts';
import { podFromArgs } from '../env.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import { podNetworkFromPrevResult } from '../prev-result.ts';
import { askAgent, podRequest, type Command } from './context.ts';
import { passUnlessMeshed } from './without-agent.ts';

export const check: Command = async (ctx) => {
  const { env, conf, log } = ctx;
  if (conf.prevResult === null) throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, 'CHECK needs prevResult');
  const pod = podFromArgs(env.args);
  if (pod === null || conf.settings.excludeNamespaces.includes(pod.namespace)) return undefined;

  const net = podNetworkFromPrevResult(conf.prevResult, env.ifname);
  const request = podRequest(env, pod, net);
  const reply = await askAgent(conf, CNI_API_PATHS.podCheck, request);
  const outcome = readAgentAnswer(reply, parsePodCheckResponse);
  if (outcome.kind === 'unavailable') {
    await passUnlessMeshed(ctx, pod, outcome.reason);
    return undefined;
  }
  const answer = outcome.value;
  if (answer.result === 'missing') throw new CniError(CNI_ERROR.NOT_ENROLLED, answer.reason);
  log.debug(`CHECK: ${answer.result}`);
  return undefined;
};
