// The agent's nftables ruleset: one table of its own (`inet weft`) in the node's network
// namespace. Enrolled pods are set elements, so enrolling or releasing a pod is one atomic set
// update, never a rule rewrite. Pure functions: rendering is tested without a kernel.
//
// What is captured, and why (docs/design-decisions.md, "Traffic from the node"):
// - prerouting: TCP from an enrolled pod's interface (outbound, 15001) and TCP to an enrolled
//   pod from anywhere else — other pods, other nodes (inbound: 15008 tunnels, 15006 plaintext).
// - output: TCP that the node itself sends to an enrolled pod — node processes and hostNetwork
//   pods, which share the node's network namespace. Without it they reach meshed pods directly,
//   past STRICT and AccessPolicy. Two exemptions: the agent's own connections (BYPASS_MARK), and
//   the kubelet's probes, as the (pod IP, port) pairs the pods' probes name (probes4). The
//   `captureNode: false` opt-out leaves the output path alone (the old "trust the node" mode).
//   The node's connections to a Service address that a local enrolled pod backs (svc4) are
//   captured too: kube-proxy's DNAT to the pod comes after these chains, and netfilter evaluates
//   no nat chain after a mapping is made, so the pod's address would never be seen here.
// - IPv6 is not captured: IPv6 TCP to and from enrolled pods is reset (fail closed), matched by
//   the pods' interfaces rather than their addresses, so that an address the agent was never told
//   about (one added by hand) is covered too. UDP is never captured, in either family.

export const TABLE = 'weft';
export const PORTS = { outbound: 15001, inboundPlaintext: 15006, hbone: 15008 } as const;

/** Packets the agent sends with this mark are never captured: its connections to the pods it
 * delivers to leave through the output path, which the node capture hooks. */
export const BYPASS_MARK = 0x539;

export interface EnrolledPod {
  /** Host-side interface of the pod's veth (from the CNI result). */
  hostInterface: string;
  ips: string[];
  /** TCP ports the kubelet probes on the pod's IPs: exempt from node capture. Absent in
   * enrolments checkpointed before probes were known (the enroller fills them in). */
  probePorts?: number[];
}

/** A Service address and port (ClusterIP . port) that a local enrolled pod backs. */
export interface ServiceAddress {
  ip: string;
  port: number;
}

export interface RenderOptions {
  /** Capture what the node itself sends to enrolled pods (default true). */
  captureNode?: boolean;
  /** Service addresses to capture from the node (svc4). */
  services?: ServiceAddress[];
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

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw Object.assign(new Error(`invalid port ${String(port)}`), { code: 'BAD_PORT' });
  return port;
}

export function ipv4Of(pod: EnrolledPod): string[] {
  return pod.ips.filter((ip) => !ip.includes(':')).map(checkIPv4);
}

/** `ip . port` elements of probes4: every IPv4 address of the pod with every probed port. */
export function probeElementsOf(pod: EnrolledPod): string[] {
  const ports = [...new Set((pod.probePorts ?? []).map(checkPort))].sort((a, b) => a - b);
  return ipv4Of(pod).flatMap((ip) => ports.map((port) => `${ip} . ${port}`));
}

/** `ip . port` elements of svc4, unique and sorted (so that equal lists render equal). */
export function serviceElements(services: ServiceAddress[]): string[] {
  return [...new Set(services.map((s) => `${checkIPv4(s.ip)} . ${checkPort(s.port)}`))].sort();
}

/** Replaces the Service addresses captured from the node, in one transaction. */
export function renderServices(services: ServiceAddress[]): string {
  const els = serviceElements(services);
  return [`flush set inet ${TABLE} svc4`, ...(els.length ? [`add element inet ${TABLE} svc4 { ${els.join(', ')} }`] : []), ''].join('\n');
}

/** The inbound capture, the same for traffic that arrives and traffic the node sends. */
const inboundRules = [
  `    ip daddr @pod_ips4 tcp dport ${PORTS.hbone} redirect to :${PORTS.hbone}`,
  `    ip daddr @pod_ips4 meta l4proto tcp redirect to :${PORTS.inboundPlaintext}`,
];

/**
 * A filter chain that resets IPv6 TCP connections opened over the pods' interfaces. It matches
 * the opening SYN only: the reset it sends, and the replies of a connection the trusted node
 * opened (captureNode: false), cross the other chains and must not be refused in turn.
 */
function ipv6Closed(name: string, hook: 'forward' | 'input' | 'output', matches: string[]): string[] {
  return [
    `  chain ${name} {`,
    `    type filter hook ${hook} priority filter - 10; policy accept;`,
    ...matches.map((m) => `    meta nfproto ipv6 ${m} tcp flags & (syn | ack) == syn reject with tcp reset`),
    `  }`,
  ];
}

/**
 * The whole table, replacing any previous version atomically (one `nft -f` transaction).
 * The nat chains run just before kube-proxy's DNAT (priority dstnat), so the agent sees Service
 * addresses as the pod sent them and balances itself.
 */
export function renderTable(pods: EnrolledPod[], opts: RenderOptions = {}): string {
  const captureNode = opts.captureNode ?? true;
  const ifaces = pods.map((p) => quoteIf(p.hostInterface));
  const ips = pods.flatMap(ipv4Of);
  const probes = pods.flatMap(probeElementsOf);
  const services = serviceElements(opts.services ?? []);
  const elements = (xs: string[]) => (xs.length ? `elements = { ${xs.join(', ')} }` : '');
  return [
    `table inet ${TABLE}`,
    `delete table inet ${TABLE}`,
    `table inet ${TABLE} {`,
    `  set pod_ifaces { type ifname; ${elements(ifaces)} }`,
    `  set pod_ips4 { type ipv4_addr; ${elements(ips)} }`,
    `  set probes4 { type ipv4_addr . inet_service; ${elements(probes)} }`,
    `  set svc4 { type ipv4_addr . inet_service; ${elements(services)} }`,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat - 10; policy accept;`,
    `    meta mark ${BYPASS_MARK} return`,
    `    iifname @pod_ifaces meta nfproto ipv4 meta l4proto tcp redirect to :${PORTS.outbound}`,
    ...inboundRules,
    `  }`,
    ...(captureNode
      ? [
          `  chain output {`,
          // -110: dstnat - 10, which nft names only on prerouting; kube-proxy's output chain is -100.
          `    type nat hook output priority -110; policy accept;`,
          `    meta mark ${BYPASS_MARK} return`,
          `    ip daddr . tcp dport @probes4 return`,
          ...inboundRules,
          `    ip daddr . tcp dport @svc4 redirect to :${PORTS.inboundPlaintext}`,
          `  }`,
        ]
      : []),
    ...ipv6Closed('ipv6_forward', 'forward', ['iifname @pod_ifaces', 'oifname @pod_ifaces']),
    // From a pod to the node itself (and to anything the node would answer for it).
    ...ipv6Closed('ipv6_input', 'input', ['iifname @pod_ifaces']),
    ...(captureNode ? ipv6Closed('ipv6_output', 'output', ['oifname @pod_ifaces']) : []),
    `}`,
    '',
  ].join('\n');
}

export function renderAdd(pod: EnrolledPod): string {
  const ips = ipv4Of(pod);
  const probes = probeElementsOf(pod);
  return [
    `add element inet ${TABLE} pod_ifaces { ${quoteIf(pod.hostInterface)} }`,
    ...(ips.length ? [`add element inet ${TABLE} pod_ips4 { ${ips.join(', ')} }`] : []),
    ...(probes.length ? [`add element inet ${TABLE} probes4 { ${probes.join(', ')} }`] : []),
    '',
  ].join('\n');
}

/** Removal must not fail when an element is already gone: `destroy` is idempotent (nft >= 1.0.8);
 * older nft gets the add-then-delete idiom, which is idempotent too. */
export function renderRemove(pod: EnrolledPod): string {
  const lines: string[] = [];
  const both = (set: string, el: string) => lines.push(`add element inet ${TABLE} ${set} { ${el} }`, `delete element inet ${TABLE} ${set} { ${el} }`);
  both('pod_ifaces', quoteIf(pod.hostInterface));
  for (const ip of ipv4Of(pod)) both('pod_ips4', ip);
  for (const el of probeElementsOf(pod)) both('probes4', el);
  return `${lines.join('\n')}\n`;
}
