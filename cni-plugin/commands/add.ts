// ADD: tell the agent which pod just got its network and wait until the agent has enrolled it or
// decided it is not meshed. weft-cni changes nothing a CNI result describes, so on success it
// prints prevResult as it received it, in the request's version: the runtime converts prevResult
// to the configuration's cniVersion before passing it, and reads our output in that version, so a
// prevResult without (or with another) cniVersion is printed with the configuration's, as libcni's
// reference chained plugins (portmap, tuning) do. Found by run.fuzz.test.ts.
import { CNI_API_PATHS, parsePodAddResponse } from '../../api/cni.ts';
import { readAgentAnswer } from '../agent-answer.ts';
import { podFromArgs } from '../env.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import { podNetworkFromPrevResult } from '../prev-result.ts';
import { askAgent, podRequest, type Command } from './context.ts';
import { passUnlessMeshed } from './without-agent.ts';

export const add: Command = async (ctx) => {
  const { env, conf, log } = ctx;
  const received = conf.prevResult;
  if (received === null) {
    throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, 'weft-cni is a chained plugin: it must follow an interface plugin (no prevResult)');
  }
  const prev = { ...received, cniVersion: conf.cniVersion };
  const pod = podFromArgs(env.args);
  if (pod === null) {
    log.info('not a Kubernetes pod (CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME); passing through');
    return prev;
  }
  if (conf.settings.excludeNamespaces.includes(pod.namespace)) {
    log.debug('namespace is excluded; passing through');
    return prev;
  }
  const net = podNetworkFromPrevResult(prev, env.ifname);
  if (net.ips.length === 0) {
    throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, `prevResult lists no address for interface ${env.ifname}`);
  }
  const request = podRequest(env, pod, net);
  const reply = await askAgent(conf, CNI_API_PATHS.podAdd, request);
  const outcome = readAgentAnswer(reply, parsePodAddResponse);
  if (outcome.kind === 'ok') {
    const answer = outcome.value;
    if (answer.result === 'enrolled') log.info('pod enrolled', { ips: net.ips.join(','), hostInterface: net.hostInterface });
    else log.info('pod not meshed', { reason: answer.reason });
    return prev;
  }
  log.warn('agent unavailable for ADD', { reason: outcome.reason });
  await passUnlessMeshed(ctx, pod, outcome.reason);
  return prev;
};
