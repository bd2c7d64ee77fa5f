// Builders for compiled policies, workloads and requests in the policy tests: every list the
// compiled form requires is filled in, so that a test states only what it is about.
import type { Endpoint, Service, ServicePort, Workload } from '../../api/agent-sync.ts';
import type {
  CompiledAccessPolicy,
  CompiledCondition,
  CompiledMeshTLSPolicy,
  CompiledPolicyHead,
  CompiledRule,
  CompiledSource,
  CompiledTarget,
  LabelSelector,
  MtlsMode,
  PolicyAction,
  PolicyScope,
  PortMtls,
} from '../../api/policy/model.ts';
import type { ConnectionAttrs, RequestAttrs } from './attributes.ts';

export const INSTALL_NS = 'weft-system';

export function spiffe(ns: string, sa: string): string {
  return `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
}

export function workload(key: string, o: { labels?: Record<string, string>; namedPorts?: Record<string, number>; ips?: string[] } = {}): Workload {
  const [namespace, name] = key.split('/') as [string, string];
  return {
    key,
    uid: `uid-${namespace}-${name}`,
    namespace,
    name,
    node: 'node-a',
    ips: o.ips ?? ['10.1.0.5'],
    serviceAccount: name,
    identity: spiffe(namespace, name),
    meshed: true,
    labels: o.labels ?? {},
    namedPorts: o.namedPorts ?? {},
  };
}

export function service(key: string, ports: (Partial<ServicePort> & { name: string; port: number })[], endpoints: Endpoint[]): Service {
  const [namespace, name] = key.split('/') as [string, string];
  return {
    key,
    namespace,
    name,
    clusterIPs: ['10.96.0.10'],
    ports: ports.map((p) => ({ protocol: 'TCP', appProtocol: '', ...p })),
    endpoints,
  };
}

export function selector(matchLabels: Record<string, string>, matchExpressions: LabelSelector['matchExpressions'] = []): LabelSelector {
  return { matchLabels, matchExpressions };
}

export function from(p: Partial<CompiledSource>): CompiledSource {
  return { identities: [], notIdentities: [], namespaces: [], notNamespaces: [], ipBlocks: [], notIpBlocks: [], ...p };
}

export function to(p: Partial<CompiledTarget>): CompiledTarget {
  return {
    ports: [],
    notPorts: [],
    methods: [],
    notMethods: [],
    paths: [],
    notPaths: [],
    hosts: [],
    notHosts: [],
    headers: [],
    notHeaders: [],
    ...p,
  };
}

export function when(key: CompiledCondition['key'], values: string[], notValues: string[] = []): CompiledCondition {
  return { key, values, notValues };
}

const L7_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts', 'headers', 'notHeaders'] as const;

/** A rule; `l7` is derived the way compile derives it. */
export function rule(p: Partial<Omit<CompiledRule, 'l7'>> = {}): Omit<CompiledRule, 'name'> & { name?: string } {
  const r = { from: [], to: [], when: [], ...p };
  const l7 = r.to.some((t) => L7_FIELDS.some((f) => t[f].length > 0)) || r.when.some((c) => c.key.startsWith('request.'));
  return { ...r, l7 };
}

/** Generation 1 of `<namespace>/<name>`; scope from the selector unless given. */
function head(key: string, o: { scope?: PolicyScope; selector?: LabelSelector }): CompiledPolicyHead {
  const [namespace, name] = key.split('/') as [string, string];
  return {
    key,
    namespace,
    name,
    generation: 1,
    scope: o.scope ?? (o.selector ? 'workload' : 'namespace'),
    ...(o.selector ? { selector: o.selector } : {}),
  };
}

export function access(
  key: string,
  action: PolicyAction,
  rules: ReturnType<typeof rule>[],
  o: { scope?: PolicyScope; selector?: LabelSelector } = {},
): CompiledAccessPolicy {
  return {
    ...head(key, o),
    action,
    rules: rules.map((r, i) => ({ ...r, name: r.name ?? `rules[${i}]` })),
  };
}

export function meshTls(
  key: string,
  mode: MtlsMode,
  o: { scope?: PolicyScope; selector?: LabelSelector; ports?: PortMtls[]; createdAt?: string } = {},
): CompiledMeshTLSPolicy {
  return {
    ...head(key, o),
    mode,
    ports: o.ports ?? [],
    createdAt: o.createdAt ?? '2025-01-01T00:00:00Z',
  };
}

/** A connection: `principal` `ns/sa` for mTLS (namespace derived), or none for plaintext. */
export function conn(destination: Workload, port: number, o: { principal?: string; ip?: string; destinationIp?: string } = {}): ConnectionAttrs {
  const ns = o.principal?.split('/')[0];
  return {
    source: {
      ...(o.principal !== undefined ? { principal: spiffe(ns as string, o.principal.split('/')[1] as string), namespace: ns } : {}),
      ip: o.ip ?? '10.2.0.9',
    },
    destination,
    port,
    ...(o.destinationIp !== undefined ? { destinationIp: o.destinationIp } : {}),
  };
}

export function req(method: string, path: string, o: { host?: string; headers?: Record<string, string> } = {}): RequestAttrs {
  const headers = o.headers ?? {};
  return { method, path, host: o.host ?? 'svc.example', header: (name) => (Object.hasOwn(headers, name) ? headers[name] : undefined) };
}
