// IP addresses and CIDRs as policies write them, parsed strictly and the way the API server's CEL
// library (isIP, isCIDR, cidr().containsCIDR) does: no zones, no IPv4-mapped IPv6 addresses, no
// leading zeros in IPv4 octets. compile.ts uses these as the twins of those CEL functions and to
// write every CIDR in one canonical form, so that agents compare like with like.

export interface Cidr {
  /** 4 bytes (IPv4) or 16 (IPv6). */
  bytes: Uint8Array;
  prefix: number;
}

const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const V6_GROUP = /^[0-9A-Fa-f]{1,4}$/;

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (const [i, p] of parts.entries()) {
    if (!V4_OCTET.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  let tail: Uint8Array | undefined;
  let text = s;
  // An embedded IPv4 address takes the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tail = parseV4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string | undefined): string[] | undefined => (h === undefined ? undefined : h === '' ? [] : h.split(':'));
  const head = groups(halves[0]) ?? [];
  const rest = groups(halves[1]);
  const fill = rest === undefined ? 0 : 8 - head.length - rest.length;
  if ((rest === undefined && head.length !== 8) || (rest !== undefined && fill < 1)) return undefined;
  const all = [...head, ...Array<string>(fill).fill('0'), ...(rest ?? [])];
  if (!all.every((g) => V6_GROUP.test(g))) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

/** `::ffff:a.b.c.d`: refused, as the API server refuses it (write the IPv4 address instead). */
function isV4Mapped(b: Uint8Array): boolean {
  return b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

export function parseIp(s: string): Uint8Array | undefined {
  const b = s.includes(':') ? parseV6(s) : parseV4(s);
  return b && !isV4Mapped(b) ? b : undefined;
}

export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const bytes = parseIp(s.slice(0, slash));
  const len = s.slice(slash + 1);
  if (!bytes || !/^(0|[1-9][0-9]{0,2})$/.test(len)) return undefined;
  const prefix = Number(len);
  return prefix <= bytes.length * 8 ? { bytes, prefix } : undefined;
}

export const isIp = (s: string): boolean => parseIp(s) !== undefined;
export const isCidr = (s: string): boolean => parseCidr(s) !== undefined;

/** The address with every bit past `prefix` cleared. */
export function masked(c: Cidr): Cidr {
  const bytes = c.bytes.map((b, i) => {
    const keep = Math.min(8, Math.max(0, c.prefix - 8 * i));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
  return { bytes, prefix: c.prefix };
}

/** RFC 5952 text for an address: IPv4 dotted, IPv6 lower-case with the longest zero run as `::`. */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return b.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best.len < 2) return hex(groups);
  return `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.len))}`;
}

export const formatCidr = (c: Cidr): string => `${formatIp(c.bytes)}/${c.prefix}`;

/** Whether `inner` lies inside `outer` (same family, at least as long a prefix). */
export function cidrContains(outer: string, inner: string): boolean {
  const o = parseCidr(outer);
  const i = parseCidr(inner);
  if (!o || !i || o.bytes.length !== i.bytes.length || i.prefix < o.prefix) return false;
  const a = masked(o).bytes;
  const b = masked({ bytes: i.bytes, prefix: o.prefix }).bytes;
  return a.every((x, k) => x === b[k]);
}
