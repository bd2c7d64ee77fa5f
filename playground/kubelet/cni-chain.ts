// Executes a network configuration list for one attachment, as a container runtime does (CNI spec
// section 3): ADD runs the plugins in order, each given the previous plugin's result; DEL runs them
// in reverse, each given the final ADD result. Plugins run in the runtime's own network namespace
// (for the simulated kubelet, the node's) unless told otherwise.
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkConfigList, PluginConfig } from './cni-config.ts';
import { parseErrorResult, parseResult, type CniResult } from './cni-result.ts';
import { KubeletError } from './errors.ts';
import { run } from './exec.ts';

export type CniCommand = 'ADD' | 'DEL';

/** What identifies one attachment of a sandbox to the network. */
export interface Attachment {
  /** CNI_CONTAINERID: the sandbox ID, stable for the pod's lifetime. */
  containerId: string;
  /** CNI_NETNS: path of the pod's network namespace. */
  netnsPath: string;
  /** CNI_IFNAME. */
  ifName: string;
  /** CNI_ARGS, in order (a runtime passes IgnoreUnknown first). */
  args: [string, string][];
}

export interface ChainOptions {
  /** CNI_PATH, in search order. */
  binDirs: string[];
  /** Deadline for each plugin execution. */
  timeoutMs?: number;
  /**
   * The runtime's network namespace (path), if it is not the caller's own: plugins create host-side
   * interfaces and routes where they run.
   */
  runtimeNetnsPath?: string;
}

/** A plugin's failure: the spec's error code, message and details, plus which plugin and command. */
export class CniPluginError extends KubeletError {
  readonly plugin: string;
  readonly command: CniCommand;
  /** The CNI error code (1-99 well known, 100+ plugin specific); undefined if none was reported. */
  readonly cniCode: number | undefined;
  readonly msg: string;
  readonly details: string | undefined;

  constructor(f: { plugin: string; command: CniCommand; network: string; cniCode?: number; msg: string; details?: string; timeout?: boolean }) {
    const detail = f.details ? `: ${f.details}` : '';
    const code = f.cniCode !== undefined ? ` (code ${f.cniCode})` : '';
    super(
      f.timeout ? 'CNI_PLUGIN_TIMEOUT' : 'CNI_PLUGIN_FAILED',
      `plugin type="${f.plugin}" name="${f.network}" failed (${f.command.toLowerCase()})${code}: ${f.msg}${detail}`,
    );
    this.name = 'CniPluginError';
    this.plugin = f.plugin;
    this.command = f.command;
    this.cniCode = f.cniCode;
    this.msg = f.msg;
    this.details = f.details;
  }
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** CNI_ARGS as a runtime formats them: KEY=VALUE pairs joined by ';'. */
export function formatCniArgs(args: [string, string][]): string {
  return args.map(([k, v]) => `${k}=${v}`).join(';');
}

/** Runs ADD through the chain and returns the final result (the one to store for DEL). */
export async function cniAdd(net: NetworkConfigList, att: Attachment, opts: ChainOptions): Promise<CniResult> {
  let prev: CniResult | undefined;
  for (const plugin of net.plugins) {
    const stdout = await execPlugin('ADD', net, plugin, att, prev, opts);
    prev = parseResult(stdout, plugin.type);
  }
  // parseNetworkConfig guarantees at least one plugin, so a result exists.
  return prev as CniResult;
}

/**
 * Runs DEL through the chain in reverse, each plugin given `prevResult` (the final ADD result, or
 * none if ADD never completed). Plugins must accept repeated DELs, so this is safe to retry.
 */
export async function cniDel(net: NetworkConfigList, att: Attachment, prevResult: CniResult | undefined, opts: ChainOptions): Promise<void> {
  for (const plugin of [...net.plugins].reverse()) {
    await execPlugin('DEL', net, plugin, att, prevResult, opts);
  }
}

/** The request configuration for one plugin (spec section 3, "Deriving request configuration"). */
export function requestConfig(net: NetworkConfigList, plugin: PluginConfig, prevResult: CniResult | undefined): Record<string, unknown> {
  const { capabilities: _capabilities, ...rest } = plugin;
  return {
    cniVersion: net.cniVersion,
    name: net.name,
    ...rest,
    ...(prevResult ? { prevResult } : {}),
  };
}

export async function findPlugin(type: string, binDirs: string[]): Promise<string | undefined> {
  for (const dir of binDirs) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      /* not in this directory */
    }
  }
  return undefined;
}

async function execPlugin(
  command: CniCommand,
  net: NetworkConfigList,
  plugin: PluginConfig,
  att: Attachment,
  prevResult: CniResult | undefined,
  opts: ChainOptions,
): Promise<string> {
  const binary = await findPlugin(plugin.type, opts.binDirs);
  if (!binary) {
    throw new KubeletError(
      'CNI_PLUGIN_NOT_FOUND',
      `plugin type="${plugin.type}" name="${net.name}" failed (${command.toLowerCase()}): failed to find plugin "${plugin.type}" in path [${opts.binDirs.join(' ')}]`,
    );
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: att.containerId,
    CNI_NETNS: att.netnsPath,
    CNI_IFNAME: att.ifName,
    CNI_ARGS: formatCniArgs(att.args),
    CNI_PATH: opts.binDirs.join(':'),
  };
  const r = await run([binary], {
    input: JSON.stringify(requestConfig(net, plugin, prevResult)),
    env,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    netnsPath: opts.runtimeNetnsPath,
  });
  if (r.timedOut) {
    throw new CniPluginError({ plugin: plugin.type, command, network: net.name, msg: `no answer within ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`, timeout: true });
  }
  if (r.code !== 0) {
    // Plugins built on the reference skeleton print the error result on stdout; others use stderr.
    const e = parseErrorResult(r.stdout) ?? parseErrorResult(r.stderr);
    throw new CniPluginError({
      plugin: plugin.type,
      command,
      network: net.name,
      ...(e
        ? { cniCode: e.code, msg: e.msg, ...(e.details !== undefined ? { details: e.details } : {}) }
        : { msg: (r.stderr.trim() || r.stdout.trim() || `exit ${r.code ?? r.signal}`).slice(0, 500) }),
    });
  }
  return r.stdout;
}
