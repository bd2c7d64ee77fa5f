// IP addresses and CIDR blocks as numbers, so that a policy's `ipBlocks` and `source.ip` /
// `destination.ip` conditions test containment with a few integer operations instead of parsing
// strings per connection. CIDRs are parsed once, when a policy is compiled for the index; a
// source address is parsed at most once per connection, and only when some rule looks at it.
//
// An address is four 32-bit words (IPv4 uses the last one). IPv4-mapped IPv6 (`::ffff:a.b.c.d`,
// what a dual-stack socket reports for an IPv4 peer) is treated as the IPv4 address it carries, in
// addresses and in CIDRs alike, so that one policy spelling covers both.

export interface IpAddress {
  readonly v6: boolean;
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

export interface Cidr {
  readonly v6: boolean;
  readonly bits: number;
  /** The network address, already masked. */
  readonly net: IpAddress;
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
}

/** Parses an IPv4 or IPv6 literal (no zone, no brackets); undefined when it is not one. */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(':')) return parseV6(text);
  const v4 = parseV4(text);
  return v4 === undefined ? undefined : { v6: false, w0: 0, w1: 0, w2: 0, w3: v4 | 0 };
}

/** Parses `addr/bits`, or a bare address as a host route (/32, /128); undefined when invalid. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!addr) return undefined;
  const mappedV4 = addr.v6 === false && text.includes(':');
  const max = addr.v6 ? 128 : 32;
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(b)) return undefined;
    bits = Number(b);
    // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8.
    if (mappedV4) {
      if (bits < 96 || bits > 128) return undefined;
      bits -= 96;
    } else if (bits > max) {
      return undefined;
    }
  }
  const shift = addr.v6 ? bits : bits + 96;
  const m0 = maskWord(shift);
  const m1 = maskWord(shift - 32);
  const m2 = maskWord(shift - 64);
  const m3 = maskWord(shift - 96);
  const net: IpAddress = { v6: addr.v6, w0: addr.w0 & m0, w1: addr.w1 & m1, w2: addr.w2 & m2, w3: addr.w3 & m3 };
  return { v6: addr.v6, bits, net, m0, m1, m2, m3 };
}

export function cidrContains(c: Cidr, ip: IpAddress): boolean {
  return (
    c.v6 === ip.v6 && (ip.w3 & c.m3) === c.net.w3 && (ip.w2 & c.m2) === c.net.w2 && (ip.w1 & c.m1) === c.net.w1 && (ip.w0 & c.m0) === c.net.w0
  );
}

/** The mask of one 32-bit word when `bits` of it (clamped to 0..32) are network bits. */
function maskWord(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return -1;
  return (-1 << (32 - bits)) | 0;
}

const DOT = 46;
const COLON = 58;

/** Strict dotted quad (no leading zeros, as Node's net.isIPv4) → unsigned 32-bit number. */
function parseV4(s: string): number | undefined {
  let value = 0;
  let parts = 0;
  let i = 0;
  const n = s.length;
  while (parts < 4) {
    const start = i;
    let octet = 0;
    while (i < n) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      i++;
    }
    const len = i - start;
    if (len === 0 || len > 3 || octet > 255 || (len > 1 && s.charCodeAt(start) === 48)) return undefined;
    value = value * 256 + octet;
    parts++;
    if (parts < 4) {
      if (s.charCodeAt(i) !== DOT) return undefined;
      i++;
    }
  }
  return i === n ? value : undefined;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function parseV6(s: string): IpAddress | undefined {
  const n = s.length;
  const head: number[] = [];
  const tail: number[] = [];
  let groups = head;
  let compressed = false;
  let i = 0;
  if (s.startsWith('::')) {
    compressed = true;
    groups = tail;
    i = 2;
  }
  while (i < n) {
    let j = i;
    let v = 0;
    for (let d = hexDigit(s.charCodeAt(j)); d >= 0 && j - i < 4; d = hexDigit(s.charCodeAt(j))) {
      v = v * 16 + d;
      j++;
    }
    if (s.charCodeAt(j) === DOT) {
      // An embedded IPv4 address ends the literal and fills the last two groups.
      const v4 = parseV4(s.slice(i));
      if (v4 === undefined) return undefined;
      groups.push(v4 >>> 16, v4 & 0xffff);
      break;
    }
    if (j === i || hexDigit(s.charCodeAt(j)) >= 0) return undefined;
    groups.push(v);
    if (j === n) break;
    if (s.charCodeAt(j) !== COLON) return undefined;
    if (s.charCodeAt(j + 1) === COLON) {
      if (compressed) return undefined;
      compressed = true;
      groups = tail;
      i = j + 2;
    } else {
      i = j + 1;
      if (i === n) return undefined;
    }
  }
  const count = head.length + tail.length;
  if (compressed ? count > 7 : count !== 8) return undefined;
  const all = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  const w = (k: number): number => (((all[2 * k] as number) << 16) | (all[2 * k + 1] as number)) | 0;
  const addr: IpAddress = { v6: true, w0: w(0), w1: w(1), w2: w(2), w3: w(3) };
  if (addr.w0 === 0 && addr.w1 === 0 && addr.w2 === 0xffff) return { v6: false, w0: 0, w1: 0, w2: 0, w3: addr.w3 };
  return addr;
}
