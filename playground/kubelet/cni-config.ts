// Finding and reading a node's network configuration the way libcni does for a container runtime:
// the first configuration file in the directory, by name, is the pod network.
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { KubeletError } from './errors.ts';

/** One plugin of a chain; keys other than `type` belong to the plugin and pass through untouched. */
export interface PluginConfig {
  type: string;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  plugins: PluginConfig[];
  /** The file the configuration came from, for messages. */
  source: string;
}

// libcni's extensions; a .conf/.json holds a single plugin and is run as a one-plugin list.
const EXTENSIONS = new Set(['.conflist', '.conf', '.json']);
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The network configuration a runtime would use now, or a CNI_CONFIG_MISSING error if none. */
export async function loadNetworkConfig(confDir: string): Promise<NetworkConfigList> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    throw new KubeletError('CNI_CONFIG_MISSING', `no network config in ${confDir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const first = names.filter((n) => EXTENSIONS.has(extname(n))).sort()[0];
  if (!first) throw new KubeletError('CNI_CONFIG_MISSING', `no network config found in ${confDir}`);
  const source = join(confDir, first);
  return parseNetworkConfig(await readFile(source, 'utf8'), source);
}

export function parseNetworkConfig(text: string, source: string): NetworkConfigList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalid(source, `not JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw invalid(source, 'not a JSON object');
  const { cniVersion, name } = raw;
  if (typeof cniVersion !== 'string' || cniVersion === '') throw invalid(source, 'cniVersion missing');
  if (typeof name !== 'string' || !NAME.test(name)) throw invalid(source, `invalid network name ${JSON.stringify(name)}`);

  let plugins: unknown[];
  if (source.endsWith('.conflist')) {
    if (!Array.isArray(raw.plugins) || raw.plugins.length === 0) throw invalid(source, 'plugins must be a non-empty list');
    plugins = raw.plugins;
  } else {
    plugins = [raw];
  }
  return { cniVersion, name, plugins: plugins.map((p, i) => pluginConfig(p, i, source)), source };
}

function pluginConfig(p: unknown, index: number, source: string): PluginConfig {
  if (!isObject(p)) throw invalid(source, `plugin ${index} is not an object`);
  const type = p.type;
  if (typeof type !== 'string' || type === '' || type.includes('/')) {
    throw invalid(source, `plugin ${index} has an invalid type ${JSON.stringify(type)}`);
  }
  return { ...p, type };
}

function invalid(source: string, why: string): KubeletError {
  return new KubeletError('CNI_CONFIG_INVALID', `${source}: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
