// What the evaluator is asked about: a connection (who connects, to which workload and port) and,
// on HTTP ports, each request on it.
import type { Workload } from '../../api/agent-sync.ts';
import { parseIp, type IpAddress } from './ip.ts';

export interface SourceAttrs {
  /** SPIFFE ID proven by mTLS; absent for plaintext. */
  principal?: string;
  /** The `ns` segment of the principal; absent for plaintext. */
  namespace?: string;
  ip: string;
}

export interface ConnectionAttrs {
  source: SourceAttrs;
  destination: Workload;
  /** The destination container port. */
  port: number;
  /**
   * The address the connection was made to, for `destination.ip` conditions. When absent, such a
   * condition tests every address of the destination workload.
   */
  destinationIp?: string;
}

/** One HTTP request, as the L7 proxy has already normalized it. */
export interface RequestAttrs {
  method: string;
  /** Normalized path, without the query. */
  path: string;
  /** Lower-case, without the port. */
  host: string;
  /** A header's value by lower-case name; undefined when absent. */
  header(name: string): string | undefined;
}

/**
 * One connection's attributes, with its addresses parsed on first use only. The index keeps one
 * instance and resets it per evaluation (evaluation is synchronous), so asking costs no allocation
 * unless a rule looks at an address.
 */
export class ConnectionContext {
  attrs: ConnectionAttrs | undefined;
  #sourceIp: IpAddress | undefined | null = null;
  #destinationIps: readonly IpAddress[] | null = null;

  reset(attrs: ConnectionAttrs): this {
    this.attrs = attrs;
    this.#sourceIp = null;
    this.#destinationIps = null;
    return this;
  }

  get source(): SourceAttrs {
    return (this.attrs as ConnectionAttrs).source;
  }

  /** undefined when the caller's address does not parse (it then lies in no CIDR). */
  sourceIp(): IpAddress | undefined {
    if (this.#sourceIp === null) this.#sourceIp = parseIp((this.attrs as ConnectionAttrs).source.ip);
    return this.#sourceIp;
  }

  destinationIps(): readonly IpAddress[] {
    if (this.#destinationIps === null) {
      const a = this.attrs as ConnectionAttrs;
      const texts = a.destinationIp !== undefined ? [a.destinationIp] : a.destination.ips;
      this.#destinationIps = texts.map(parseIp).filter((ip): ip is IpAddress => ip !== undefined);
    }
    return this.#destinationIps;
  }
}
