// The CNI result types a runtime reads (spec section 5), parsed at the boundary where a plugin's
// output enters the kubelet.
import { KubeletError } from './errors.ts';

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** The namespace path for interfaces inside the sandbox; absent or empty on the host. */
  sandbox?: string;
}

export interface CniIPConfig {
  /** CIDR notation, e.g. 10.200.129.5/24. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: { dst: string; gw?: string }[];
  dns?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface CniErrorResult {
  code: number;
  msg: string;
  details?: string;
}

export function parseResult(text: string, plugin: string): CniResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KubeletError('CNI_RESULT_INVALID', `plugin type="${plugin}" printed a result that is not JSON`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new KubeletError('CNI_RESULT_INVALID', `plugin type="${plugin}" printed a result that is not an object`);
  }
  const r = raw as Record<string, unknown>;
  if (r.ips !== undefined && !Array.isArray(r.ips)) {
    throw new KubeletError('CNI_RESULT_INVALID', `plugin type="${plugin}" result: ips is not a list`);
  }
  if (r.interfaces !== undefined && !Array.isArray(r.interfaces)) {
    throw new KubeletError('CNI_RESULT_INVALID', `plugin type="${plugin}" result: interfaces is not a list`);
  }
  return { ...r, cniVersion: typeof r.cniVersion === 'string' ? r.cniVersion : '' };
}

/** An error result from a plugin's output, if the output is one. */
export function parseErrorResult(text: string): CniErrorResult | undefined {
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    if (typeof raw.code !== 'number' || typeof raw.msg !== 'string') return undefined;
    return { code: raw.code, msg: raw.msg, ...(typeof raw.details === 'string' ? { details: raw.details } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * The pod's addresses: those on interfaces inside the sandbox (or not tied to an interface),
 * without prefix length, in result order, as the kubelet lists them in status.podIPs.
 */
export function sandboxIPs(result: CniResult, netnsPath: string): string[] {
  const interfaces = result.interfaces ?? [];
  const out: string[] = [];
  for (const ip of result.ips ?? []) {
    if (typeof ip.address !== 'string') continue;
    if (ip.interface !== undefined) {
      const itf = interfaces[ip.interface];
      if (!itf || itf.sandbox !== netnsPath) continue;
    }
    const addr = ip.address.split('/')[0];
    if (addr && !out.includes(addr)) out.push(addr);
  }
  return out;
}
