// What weft-cni reads from the chain's result so far: the pod's addresses and the host-side end
// of its link. It never changes prevResult: the plugin prints it back untouched.
import { isIP } from 'node:net';
import { CNI_ERROR, CniError } from './errors.ts';
import type { PrevResult } from './netconf.ts';

export interface PodNetwork {
  /** Addresses on the pod's interface, without prefix length. */
  ips: string[];
  /** Host-side interface (e.g. the veth peer), or null when the result lists none. */
  hostInterface: string | null;
}

interface ResultInterface {
  name: string;
  sandbox: string;
}

/**
 * Works for every supported result version (0.3.x added `version` to each IP, 1.0 removed it;
 * neither matters here). The pod's interface is the one named CNI_IFNAME inside a sandbox; the
 * host-side interface is taken as the nearest one without a sandbox listed before it, which is
 * how ptp ([veth, eth0]) and bridge ([bridge, veth, eth0]) order their results.
 */
export function podNetworkFromPrevResult(prev: PrevResult, ifname: string): PodNetwork {
  const interfaces: ResultInterface[] = (Array.isArray(prev.interfaces) ? (prev.interfaces as unknown[]) : []).map(
    (raw) => {
      const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
      return { name: typeof o.name === 'string' ? o.name : '', sandbox: typeof o.sandbox === 'string' ? o.sandbox : '' };
    },
  );
  const podIndex = interfaces.findIndex((i) => i.name === ifname && i.sandbox !== '');

  const ips: string[] = [];
  const rawIps = Array.isArray(prev.ips) ? (prev.ips as unknown[]) : [];
  rawIps.forEach((raw, n) => {
    const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    if (typeof o.interface === 'number' && podIndex >= 0 && o.interface !== podIndex) return;
    const address = typeof o.address === 'string' ? o.address.replace(/\/\d+$/, '') : '';
    if (isIP(address) === 0) {
      throw new CniError(CNI_ERROR.INVALID_NETWORK_CONFIG, `prevResult.ips[${n}].address is not an address in CIDR notation`);
    }
    if (!ips.includes(address)) ips.push(address);
  });

  const hostSide = interfaces.slice(0, podIndex >= 0 ? podIndex : interfaces.length).filter((i) => i.sandbox === '' && i.name !== '');
  return { ips, hostInterface: hostSide.at(-1)?.name ?? null };
}
