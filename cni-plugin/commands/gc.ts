// GC (spec 1.1): forward the runtime's list of still-valid attachments; the agent releases every
// enrolment not on it.
import { CNI_API_PATHS, parseGcResponse } from '../../api/cni.ts';
import type { GcRequest } from '../../api/cni.ts';
import { readAgentAnswer } from '../agent-answer.ts';
import { CNI_ERROR, CniError } from '../errors.ts';
import { askAgent, type Command } from './context.ts';

export const gc: Command = async ({ conf, log }) => {
  if (conf.validAttachments === null) {
    log.warn('GC without cni.dev/valid-attachments: nothing forwarded (DEL and agent reconciliation cover release)');
    return undefined;
  }
  const request: GcRequest = { validAttachments: conf.validAttachments };
  const reply = await askAgent(conf, CNI_API_PATHS.gc, request);
  const outcome = readAgentAnswer(reply, parseGcResponse);
  if (outcome.kind === 'unavailable') throw new CniError(CNI_ERROR.TRY_AGAIN_LATER, `weft agent unavailable: ${outcome.reason}`);
  log.info('GC done', { valid: conf.validAttachments.length, released: outcome.value.released });
  return undefined;
};
