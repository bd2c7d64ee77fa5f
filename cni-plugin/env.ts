// The runtime's half of a CNI call: the CNI_* environment variables (spec, section 2 "Parameters").
import { CNI_ERROR, CniError } from './errors.ts';
import type { PodIdentity } from '../api/cni.ts';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

export interface CniEnv {
  command: CniCommand;
  /** Empty for the commands that have no attachment (GC, STATUS, VERSION). */
  containerId: string;
  /** Empty when the runtime gave none (allowed for DEL). */
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs, e.g. K8S_POD_NAMESPACE. */
  args: ReadonlyMap<string, string>;
}

/** Which variables each command needs (spec: "Required environment parameters"). */
const REQUIRED: Record<CniCommand, readonly ('CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME')[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: [],
  STATUS: [],
  VERSION: [],
};

export function readCniEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(
      CNI_ERROR.INVALID_ENV,
      command === '' ? 'CNI_COMMAND is not set' : `CNI_COMMAND=${JSON.stringify(command)} is not one of ${CNI_COMMANDS.join(', ')}`,
    );
  }
  const cmd = command as CniCommand;
  const missing = REQUIRED[cmd].filter((name) => !env[name]);
  if (missing.length > 0) throw new CniError(CNI_ERROR.INVALID_ENV, `${cmd} needs ${missing.join(', ')}`);
  return {
    command: cmd,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: parseCniArgs(env.CNI_ARGS ?? ''),
  };
}

/** CNI_ARGS: "K1=V1;K2=V2". A value may itself contain '=' (only the first one splits). */
export function parseCniArgs(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  if (raw === '') return out;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERROR.INVALID_ENV, `CNI_ARGS: ${JSON.stringify(pair)} is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** The Kubernetes pod the runtime is wiring, or null when the call is not for a pod. */
export function podFromArgs(args: ReadonlyMap<string, string>): PodIdentity | null {
  const namespace = args.get('K8S_POD_NAMESPACE') ?? '';
  const name = args.get('K8S_POD_NAME') ?? '';
  if (namespace === '' || name === '') return null;
  return { namespace, name, uid: args.get('K8S_POD_UID') ?? '' };
}
