// What a destination port is called and what it speaks, from the destination workload's point of
// view. A policy may name a port by the workload's container-port name or by the name of a Service
// port that targets it; the application protocol comes from such a Service port's appProtocol.
import type { Service, ServicePort, Workload } from '../../api/agent-sync.ts';
import { HTTP_APP_PROTOCOLS } from '../../api/policy/model.ts';

export interface PortInfo {
  readonly port: number;
  /** Every name this port goes by on the workload: container-port names and Service port names. */
  readonly names: readonly string[];
  /** The Service port's appProtocol (lower-case, without `kubernetes.io/`), or `tcp`. */
  readonly appProtocol: string;
  /** Whether L7 rules apply on this port (appProtocol in HTTP_APP_PROTOCOLS). */
  readonly http: boolean;
}

interface Backing {
  readonly service: Service;
  readonly ports: Record<string, number>;
}

/**
 * Finds the Service ports backed by a workload. The reverse map (workload → the Services' endpoints
 * that name it) is built on first use, so building an index stays O(policies + workloads) and
 * only an agent that actually evaluates pays for a pass over the endpoints.
 */
export class ServicePortIndex {
  readonly #services: readonly Service[];
  #byWorkload: Map<string, Backing[]> | undefined;

  constructor(services: readonly Service[]) {
    this.#services = services;
  }

  portInfo(workload: Workload, port: number): PortInfo {
    const names: string[] = [];
    for (const name in workload.namedPorts) if (workload.namedPorts[name] === port) names.push(name);
    let appProtocol = '';
    for (const b of this.#backing(workload.key)) {
      for (const sp of b.service.ports) {
        if (sp.protocol !== 'TCP' || !Object.hasOwn(b.ports, sp.name) || b.ports[sp.name] !== port) continue;
        if (!names.includes(sp.name)) names.push(sp.name);
        appProtocol = preferred(appProtocol, normalize(sp));
      }
    }
    appProtocol ||= 'tcp';
    return { port, names, appProtocol, http: HTTP_APP_PROTOCOLS.has(appProtocol) };
  }

  #backing(workloadKey: string): readonly Backing[] {
    if (!this.#byWorkload) {
      const map = new Map<string, Backing[]>();
      // Sorted, so that the protocol chosen among Services that disagree does not depend on order.
      const services = [...this.#services].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (const service of services) {
        for (const e of service.endpoints) {
          if (e.workload === undefined) continue;
          let list = map.get(e.workload);
          if (!list) map.set(e.workload, (list = []));
          list.push({ service, ports: e.ports });
        }
      }
      this.#byWorkload = map;
    }
    return this.#byWorkload.get(workloadKey) ?? [];
  }
}

function normalize(sp: ServicePort): string {
  const p = sp.appProtocol.toLowerCase();
  return p.startsWith('kubernetes.io/') ? p.slice('kubernetes.io/'.length) : p;
}

/**
 * When Services disagree about one target port, HTTP wins: a port some Service declares HTTP is
 * parsed as HTTP, so that L7 rules written for that Service are enforced rather than failing closed
 * for everyone. Otherwise the first Service (by key) decides.
 */
function preferred(current: string, next: string): string {
  if (current === '') return next;
  if (!HTTP_APP_PROTOCOLS.has(current) && HTTP_APP_PROTOCOLS.has(next)) return next;
  return current;
}
