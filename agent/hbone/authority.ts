// The CONNECT target: `:authority` is `<IPv4>:<port>` or `[<IPv6>]:<port>`, nothing else (no host
// names: HBONE always names the destination pod's address).

import net from 'node:net';

export type SocketAddress = { ip: string; port: number };

export function formatAuthority(address: SocketAddress): string {
  return net.isIPv6(address.ip) ? `[${address.ip}]:${address.port}` : `${address.ip}:${address.port}`;
}

/** Parses an authority; undefined when it is not exactly an IP literal and a port in 1..65535. */
export function parseAuthority(authority: string | undefined): SocketAddress | undefined {
  if (authority === undefined) return undefined;
  const colon = authority.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const portText = authority.slice(colon + 1);
  if (!/^[1-9][0-9]{0,4}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  let ip = authority.slice(0, colon);
  if (ip.startsWith('[') && ip.endsWith(']')) {
    ip = ip.slice(1, -1);
    if (!net.isIPv6(ip) || ip.includes('%')) return undefined;
    ip = canonicalIp(ip);
  } else if (!net.isIPv4(ip)) {
    return undefined;
  }
  return { ip, port };
}

/**
 * One spelling per address, so addresses compare as strings: IPv6 compressed and lower-case (the
 * WHATWG URL serializer implements RFC 5952), IPv4-mapped IPv6 as plain IPv4 (what a dual-stack
 * socket reports for an IPv4 peer).
 */
export function canonicalIp(ip: string): string {
  if (!net.isIPv6(ip)) return ip;
  const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(canonical) ?? /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  if (mapped.length === 2) return mapped[1] as string;
  const high = parseInt(mapped[1] as string, 16);
  const low = parseInt(mapped[2] as string, 16);
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}
