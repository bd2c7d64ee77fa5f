// The agent's nftables ruleset: one table of its own (`inet weft`) in the node's network
// namespace. Enrolled pods are set elements, so enrolling or releasing a pod is one atomic set
// update, never a rule rewrite. Pure functions: rendering is tested without a kernel.

export const TABLE = 'weft';
export const PORTS = { outbound: 15001, inboundPlaintext: 15006, hbone: 15008 } as const;

/** Packets the agent sends with this mark are never captured (belt and braces: its own traffic
 * leaves through the output path, which the rules do not hook). */
export const BYPASS_MARK = 0x539;

export interface EnrolledPod {
  /** Host-side interface of the pod's veth (from the CNI result). */
  hostInterface: string;
  ips: string[];
}

function quoteIf(name: string): string {
  if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(name)) throw Object.assign(new Error(`invalid interface name "${name}"`), { code: 'BAD_IFNAME' });
  return `"${name}"`;
}

function checkIPv4(ip: string): string {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw Object.assign(new Error(`invalid IPv4 address "${ip}"`), { code: 'BAD_IP' });
  }
  return ip;
}

export function ipv4Of(pod: EnrolledPod): string[] {
  return pod.ips.filter((ip) => !ip.includes(':')).map(checkIPv4);
}

/**
 * The whole table, replacing any previous version atomically (one `nft -f` transaction).
 * The prerouting chain runs just before kube-proxy's DNAT (priority dstnat), so the agent sees
 * Service addresses as the pod sent them and balances itself.
 */
export function renderTable(pods: EnrolledPod[]): string {
  const ifaces = pods.map((p) => quoteIf(p.hostInterface));
  const ips = pods.flatMap(ipv4Of);
  const elements = (xs: string[]) => (xs.length ? `elements = { ${xs.join(', ')} }` : '');
  return [
    `table inet ${TABLE}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    `  set pod_ifaces { type ifname; ${elements(ifaces)} }`,
    `  set pod_ips4 { type ipv4_addr; ${elements(ips)} }`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat - 10; policy accept;`,
    `    meta mark ${BYPASS_MARK} return`,
    `    iifname @pod_ifaces meta l4proto tcp redirect to :${PORTS.outbound}`,
    `    ip daddr @pod_ips4 tcp dport ${PORTS.hbone} redirect to :${PORTS.hbone}`,
    `    ip daddr @pod_ips4 meta l4proto tcp redirect to :${PORTS.inboundPlaintext}`,
    `  }`,
    `}`,
    '',
  ].join('\n');
}

export function renderAdd(pod: EnrolledPod): string {
  const ips = ipv4Of(pod);
  return [
    `add element inet ${TABLE} pod_ifaces { ${quoteIf(pod.hostInterface)} }`,
    ...(ips.length ? [`add element inet ${TABLE} pod_ips4 { ${ips.join(', ')} }`] : []),
    '',
  ].join('\n');
}

/** Removal must not fail when an element is already gone: `destroy` is idempotent (nft >= 1.0.8);
 * older nft gets the add-then-delete idiom, which is idempotent too. */
export function renderRemove(pod: EnrolledPod): string {
  const ips = ipv4Of(pod);
  const lines: string[] = [];
  const both = (set: string, el: string) => lines.push(`add element inet ${TABLE} ${set} { ${el} }`, `delete element inet ${TABLE} ${set} { ${el} }`);
  both('pod_ifaces', quoteIf(pod.hostInterface));
  for (const ip of ips) both('pod_ips4', ip);
  return `${lines.join('\n')}\n`;
}
