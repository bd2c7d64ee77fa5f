// What every command gets: the runtime's environment, the parsed configuration and the log.
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
