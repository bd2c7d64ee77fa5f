// The runtime's other half of a CNI call: the request configuration on stdin (spec, section 3
// "Deriving request configuration"): our conflist entry plus cniVersion, name and, for
// ADD/CHECK/DEL, prevResult; for GC, the attachments that are still valid.
import { CniContractError, parseWeftCniSettings } from '../api/cni.ts';
import type { Attachment, WeftCniSettings } from '../api/cni.ts';
import { CNI_ERROR, CniError } from './errors.ts';

/** Spec versions this plugin speaks. 0.3.0 is the first with chaining (prevResult). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** The version errors are reported in before the configuration has been read. */
export const NEWEST_VERSION = '1.1.0';

export type PrevResult = Record<string, unknown>;

export interface NetConf {
  cniVersion: string;
  /** Network name (the conflist's `name`). */
  name: string;
  /** The chain's result so far; null when the runtime gave none. */
  prevResult: PrevResult | null;
  settings: WeftCniSettings;
  /**
   * GC only. null when the runtime sent no list: libcni omits it when its caller passes no GC
   * arguments, and treating "no list" as "nothing is valid" would release every pod on the node.
   */
  validAttachments: Attachment[] | null;
}

/** Parses stdin; failures carry the spec's code (6 undecodable, 7 invalid, 1 unsupported version). */
export function parseNetConf(stdin: string): NetConf {
  const raw = decode(stdin);
  const cniVersion = raw.cniVersion;
  if (typeof cniVersion !== 'string' || cniVersion === '') {
    throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, 'cniVersion must be a non-empty string');
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new CniError(
      CNI_ERROR.INCOMPATIBLE_VERSION,
      `cniVersion ${JSON.stringify(cniVersion)} is not supported; weft-cni speaks ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  if (typeof raw.name !== 'string') throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, 'name must be a string');
  const prev = raw.prevResult;
  if (prev !== undefined && (typeof prev !== 'object' || prev === null || Array.isArray(prev))) {
    throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, 'prevResult must be an object');
  }
  return {
    cniVersion,
    name: raw.name,
    prevResult: (prev as PrevResult | undefined) ?? null,
    settings: contract(() => parseWeftCniSettings(raw)),
    validAttachments: readValidAttachments(raw),
  };
}

/**
 * The version to answer in, read before (and regardless of) full validation, so that an error
 * about the rest of the configuration still comes in the caller's version when we speak it.
 */
export function answerVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown } | null)?.cniVersion;
    if (typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)) return v;
  } catch {
    // Undecodable: parseNetConf reports it.
  }
  return NEWEST_VERSION;
}

/**
 * VERSION's input carries only cniVersion. No input at all is a request too: the reference plugins
 * (libcni's skel, e.g. Debian's ptp) answer VERSION without reading stdin, and runtimes and people
 * probe plugins with `CNI_COMMAND=VERSION plugin </dev/null`; they get our newest version. Input
 * that is there but is not a JSON object is still an error (6), as for every command.
 */
export function parseVersionRequest(stdin: string): string {
  if (stdin.trim() === '') return NEWEST_VERSION;
  const v = decode(stdin).cniVersion;
  return typeof v === 'string' && v !== '' ? v : NEWEST_VERSION;
}

function decode(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CNI_ERROR.DECODE_FAILURE, `stdin is not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(CNI_ERROR.DECODE_FAILURE, 'stdin must be a JSON object');
  }
  return raw as Record<string, unknown>;
}

function readValidAttachments(raw: Record<string, unknown>): Attachment[] | null {
  // libcni also sends the spec's first, mistaken name for this key (containernetworking/cni#1101).
  const key = 'cni.dev/valid-attachments' in raw ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = raw[key];
  if (list === undefined || list === null) return null;
  if (!Array.isArray(list)) throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, `${key} must be an array`);
  return list.map((item: unknown, i) => {
    const o = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    if (typeof o.containerID !== 'string' || typeof o.ifname !== 'string' || o.containerID === '' || o.ifname === '') {
      throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, `${key}[${i}] must have string containerID and ifname`);
    }
    return { containerId: o.containerID, ifname: o.ifname };
  });
}

function contract<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof CniContractError) {
      throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, `weft-cni settings: ${err.message.replace(/^\$\.?/, '')}`);
    }
    throw err;
  }
}
