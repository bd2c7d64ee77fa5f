// Which pod a tunnelled stream comes from, as far as it can be proven.
//
// A peer agent names the source pod in the CONNECT's W3C `baggage` header (as ztunnel does); that
// pod's address then feeds `ipBlocks` rules. The header is the peer's word, so it counts only when
// everything it asserts is backed by something the peer cannot forge:
//
//   - the pod carries the identity of the peer's client certificate (the CA signed it), and
//   - the pod runs on the node the connection comes from: the peer's address is one of the
//     addresses (`hostIPs`) that the pods on that node report for it.
//
// Otherwise the claim is ignored, not refused: the stream is attributed to what is proven (the
// certificate's identity and the peer node's address), which is what policy would see from a peer
// that sent no baggage at all. Refusing would also break honest peers whose claims cannot be
// checked: a pod the controller has not reported yet, or a CNI that tunnels from an overlay
// interface whose address is not the node's. The metric counts every ignored claim by reason, so a
// peer trying to borrow addresses shows up.

import type { Workload } from '../../api/agent-sync.ts';
import { canonicalIp, type SocketAddress } from './authority.ts';
import { sourceClaimsIgnored } from './metrics.ts';

/** What a verifier needs from the agent's workload state. */
export interface WorkloadDirectory {
  workload(key: string): Workload | undefined;
  workloads(): Workload[];
  onChange(listener: () => void): () => void;
}

export type SourceClaim = { namespace: string; pod: string };

export type ClaimVerdict =
  | { result: 'none' } // no claim made
  | { result: 'accepted'; source: Workload }
  | { result: 'ignored'; reason: ClaimIgnoredReason; claim?: SourceClaim };

export type ClaimIgnoredReason =
  | 'MALFORMED' // not parseable W3C baggage, too large, or the pod named twice
  | 'UNKNOWN_POD' // no such pod in the agent's state
  | 'NO_ADDRESS' // the pod has no address yet
  | 'IDENTITY_MISMATCH' // the pod does not carry the certificate's identity
  | 'NODE_UNKNOWN' // the peer's address is not a node address the state knows
  | 'NODE_MISMATCH'; // the pod runs on another node than the one the peer connects from

/** W3C Baggage limits (https://www.w3.org/TR/baggage/#limits): more is not baggage. */
const MAX_BAGGAGE_BYTES = 8192;
const MAX_MEMBERS = 180;
const NAMESPACE_KEY = 'k8s.namespace.name';
const POD_KEY = 'k8s.pod.name';

/**
 * The pod a `baggage` header names; undefined when it names none, 'MALFORMED' when the header is
 * not W3C baggage or names the pod ambiguously (a key twice with different values).
 */
export function parseSourceClaim(baggage: string | string[] | undefined): SourceClaim | undefined | 'MALFORMED' {
  if (baggage === undefined) return undefined;
  // Node joins repeated `baggage` fields with ", ", which is how W3C says to combine them.
  const text = Array.isArray(baggage) ? baggage.join(',') : baggage;
  if (Buffer.byteLength(text) > MAX_BAGGAGE_BYTES) return 'MALFORMED';
  const members = text.split(',');
  if (members.length > MAX_MEMBERS) return 'MALFORMED';
  const found = new Map<string, string>();
  for (const member of members) {
    const [pair = ''] = member.split(';', 1); // properties after ';' are metadata: ignored
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      if (pair.trim() === '') continue; // empty list-members are allowed
      return 'MALFORMED';
    }
    const key = pair.slice(0, eq).trim();
    if (key !== NAMESPACE_KEY && key !== POD_KEY) continue;
    let value: string;
    try {
      value = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      return 'MALFORMED';
    }
    const earlier = found.get(key);
    if (earlier !== undefined && earlier !== value) return 'MALFORMED';
    found.set(key, value);
  }
  const namespace = found.get(NAMESPACE_KEY);
  const pod = found.get(POD_KEY);
  if (namespace === undefined && pod === undefined) return undefined;
  // Kubernetes names: DNS labels / subdomains. Anything else cannot name a pod.
  if (!namespace || !pod || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(namespace + '.' + pod)) return 'MALFORMED';
  return { namespace, pod };
}

/**
 * Checks claims against the workload state. Keeps an index from node address to node, rebuilt
 * when the state changes, so a stream costs two map lookups.
 */
export class SourceClaimVerifier {
  readonly #directory: WorkloadDirectory;
  #nodeByAddress: Map<string, string | null> | undefined;

  constructor(directory: WorkloadDirectory) {
    this.#directory = directory;
    directory.onChange(() => (this.#nodeByAddress = undefined));
  }

  verify(baggage: string | string[] | undefined, peer: { identity: string; address: SocketAddress }): ClaimVerdict {
    const verdict = this.#check(baggage, peer);
    if (verdict.result === 'ignored') sourceClaimsIgnored.inc({ reason: verdict.reason });
    return verdict;
  }

  #check(baggage: string | string[] | undefined, peer: { identity: string; address: SocketAddress }): ClaimVerdict {
    const claim = parseSourceClaim(baggage);
    if (claim === undefined) return { result: 'none' };
    if (claim === 'MALFORMED') return { result: 'ignored', reason: 'MALFORMED' };
    const pod = this.#directory.workload(`${claim.namespace}/${claim.pod}`);
    if (!pod) return { result: 'ignored', reason: 'UNKNOWN_POD', claim };
    if (pod.ips.length === 0) return { result: 'ignored', reason: 'NO_ADDRESS', claim };
    if (pod.identity !== peer.identity) return { result: 'ignored', reason: 'IDENTITY_MISMATCH', claim };
    const node = this.#nodeOf(canonicalIp(peer.address.ip));
    if (node === undefined) return { result: 'ignored', reason: 'NODE_UNKNOWN', claim };
    if (node !== pod.node) return { result: 'ignored', reason: 'NODE_MISMATCH', claim };
    return { result: 'accepted', source: pod };
  }

  /** The node with this address; undefined when none or (misreported state) more than one has it. */
  #nodeOf(ip: string): string | undefined {
    if (!this.#nodeByAddress) {
      const index = new Map<string, string | null>();
      for (const w of this.#directory.workloads()) {
        for (const raw of w.hostIPs ?? []) {
          const hostIp = canonicalIp(raw);
          const known = index.get(hostIp);
          index.set(hostIp, known === undefined || known === w.node ? w.node : null);
        }
      }
      this.#nodeByAddress = index;
    }
    return this.#nodeByAddress.get(ip) ?? undefined;
  }
}
