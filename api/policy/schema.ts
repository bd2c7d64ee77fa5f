// The one source of truth for Weft's policy CRDs: their OpenAPI v3 schemas, as TypeScript objects.
//
// From this file come (scripts/gen-api.ts, checked by a test to be current):
//   - helm/weft/crds/weft.dev_*.yaml — the CustomResourceDefinitions the chart installs;
//   - api/policy/types.gen.ts        — the TypeScript types of the objects;
// and at run time compile.ts walks these schemas to validate what the controller reads, because
// the CRD installed in a cluster may be older than the controller.
//
// Every CEL rule (x-kubernetes-validations) carries its TypeScript twin under the TWIN symbol: the
// same check, run by compile.ts with the same message. They sit side by side so that they cannot
// drift apart; api/policy/crd.test.ts sends the same bad objects to a real API server and to
// compile.ts. Symbol-keyed fields (TWIN, TS_NAME, TS_TYPE) never reach the YAML.
//
// Bounds (maxItems, maxLength, maxProperties) are there for the API server's CEL cost estimate,
// which multiplies the cost of a rule by how many times it can run; they are generous for real
// policies. A rule's cost must stay under the per-expression and per-CRD limits, or the API
// server refuses the CRD (crd.test.ts installs them).
import type { ConditionSpec, IPBlockSpec, LabelSelectorRequirementSpec, AccessRule, AccessSource, AccessTarget } from './types.gen.ts';
import { cidrContains, isCidr, isIp } from './cidr.ts';
import { ACCESS_POLICY_PLURAL, MESH_TLS_POLICY_PLURAL, POLICY_GROUP, POLICY_VERSION } from './model.ts';

/** The TypeScript twin of a CEL rule: true when the value is valid. */
export const TWIN: unique symbol = Symbol('weft.twin');
/** The interface name types.gen.ts gives this (object) schema. */
export const TS_NAME: unique symbol = Symbol('weft.tsName');
/** A TypeScript type expression that replaces the generated one (and makes the field required). */
export const TS_TYPE: unique symbol = Symbol('weft.tsType');

export interface ValidationRule {
  rule: string;
  message: string;
  /** Where the API server (and compile.ts) reports a failure, relative to the rule's node. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  // `never` so that a twin may declare the type of the node it sits on; compile.ts calls it only
  // once the node has passed the structural checks.
  [TWIN]: (self: never) => boolean;
}

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps the Weft CRDs use, with wire names. */
export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  format?: 'int32' | 'int64' | 'date-time';
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  required?: string[];
  items?: Schema;
  enum?: string[];
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  minimum?: number;
  maximum?: number;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
  'x-kubernetes-preserve-unknown-fields'?: true;
  [TS_NAME]?: string;
  [TS_TYPE]?: string;
}

// ---- formats shared by CEL rules, patterns and their twins ---------------------------------------
// Written in the common subset of RE2 (the API server) and JavaScript regular expressions.

/** A DNS label (RFC 1123): namespace names, rule names. */
export const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** A label key: an optional DNS-subdomain prefix and "/", then a name of up to 63 characters. */
export const LABEL_KEY = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
export const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
/** An HTTP header name (an RFC 9110 token). */
export const HEADER_NAME = "^[-!#$%&'*+.^_`|~0-9A-Za-z]+$";
/** A Weft workload identity without wildcards, with or without the spiffe:// scheme. */
export const IDENTITY = '^(spiffe://)?[^/*\\s]+/ns/[^/\\s]+/sa/[^/\\s]+$';
/** An IANA service name as Kubernetes accepts for port names (the length and "--" are separate). */
export const PORT_NAME = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const HOST = '^[-A-Za-z0-9.*:\\[\\]]+$';
export const METHOD = '^[A-Za-z]+$';
export const CONDITION_KEYS = [
  'source.ip',
  'source.principal',
  'source.namespace',
  'destination.ip',
  'destination.port',
  'request.method',
  'request.path',
  'request.host',
] as const;
/** `request.headers[<name>]`; the name is a header name without its anchors. */
export const HEADER_CONDITION_KEY = `^request\\.headers\\[${HEADER_NAME.slice(1, -1)}\\]$`;

/** Messages the CEL rules and compile.ts share (compile checks condition values with them too). */
export const MESSAGES = {
  identity: 'an identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or the same without "spiffe://"',
  method: 'an HTTP method is letters only, such as GET or post',
  host: 'a host is letters, digits, ".", "-", ":" and "*", such as api.example.com',
  pathStart: 'a path starts with "/" (exact "/x" or prefix "/x/*") or "*" (suffix "*.js", or "*" for any)',
  ipValues: 'source.ip and destination.ip values are IP addresses or CIDRs',
  cidr: 'cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8',
} as const;

const regexps = new Map<string, RegExp>();
/** The compiled form of one of the patterns above (compiled once: twins run for every value). */
export function re(pattern: string): RegExp {
  let r = regexps.get(pattern);
  if (!r) regexps.set(pattern, (r = new RegExp(pattern)));
  return r;
}
const celList = (xs: readonly string[]): string => `[${xs.map((x) => `'${x}'`).join(', ')}]`;

/** At most one `*`, and only as the first or last character (so: exact, prefix, suffix or any). */
export function wildcardAtEdge(s: string): boolean {
  const i = s.indexOf('*');
  return i === s.lastIndexOf('*') && (i === -1 || i === 0 || i === s.length - 1);
}

export function isPortName(s: string): boolean {
  return s.length <= 15 && re(PORT_NAME).test(s) && /[a-z]/.test(s) && !s.includes('--');
}

const wildcardRule = (what: string): ValidationRule => ({
  rule: "self.indexOf('*') == self.lastIndexOf('*') && self.indexOf('*') in [-1, 0, size(self) - 1]",
  message: `${what} may contain one "*", only as its first or last character`,
  [TWIN]: wildcardAtEdge,
});

// ---- building blocks -------------------------------------------------------------------------------

const str = (description: string, maxLength: number, extra: Partial<Schema> = {}): Schema => ({ type: 'string', description, maxLength, ...extra });
const list = (description: string, items: Schema, maxItems: number, extra: Partial<Schema> = {}): Schema => ({ type: 'array', description, items, maxItems, ...extra });
const count = (description: string): Schema => ({ type: 'integer', format: 'int32', minimum: 0, description });

const labelSelectorRequirement: Schema = {
  [TS_NAME]: 'LabelSelectorRequirementSpec',
  type: 'object',
  description: 'A label requirement: key, operator and values.',
  required: ['key', 'operator'],
  properties: {
    key: str('The label key.', 316, { pattern: LABEL_KEY }),
    operator: { type: 'string', description: 'In, NotIn, Exists or DoesNotExist.', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
    values: list('Values for In and NotIn; must be empty for Exists and DoesNotExist.', str('A label value.', 63, { pattern: LABEL_VALUE }), 64),
  },
  'x-kubernetes-validations': [
    {
      rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
      message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist',
      fieldPath: '.values',
      [TWIN]: (r: LabelSelectorRequirementSpec) => (r.operator === 'In' || r.operator === 'NotIn' ? (r.values?.length ?? 0) > 0 : (r.values?.length ?? 0) === 0),
    },
  ],
};

function labelSelector(description: string): Schema {
  return {
    [TS_NAME]: 'LabelSelectorSpec',
    type: 'object',
    description: `${description} A Kubernetes label selector: matchLabels and matchExpressions must all match; empty selects everything.`,
    'x-kubernetes-map-type': 'atomic',
    properties: {
      matchLabels: {
        type: 'object',
        description: 'Labels that must be present with exactly these values.',
        additionalProperties: str('A label value.', 63, { pattern: LABEL_VALUE }),
        maxProperties: 64,
        'x-kubernetes-validations': [
          {
            rule: `self.all(k, size(k) <= 316 && k.matches(r"${LABEL_KEY}"))`,
            message: 'label keys are an optional DNS-subdomain prefix and "/", then a name of up to 63 letters, digits, "-", "_" and "."',
            [TWIN]: (m: Record<string, string>) => Object.keys(m).every((k) => k.length <= 316 && re(LABEL_KEY).test(k)),
          },
        ],
      },
      matchExpressions: list('Label requirements, all of which must match.', labelSelectorRequirement, 32),
    },
  };
}

// ---- AccessPolicy ----------------------------------------------------------------------------------

const ipBlock: Schema = {
  [TS_NAME]: 'IPBlockSpec',
  type: 'object',
  description: 'A range of peer addresses: an IPv4 or IPv6 CIDR, minus the CIDRs in except.',
  required: ['cidr'],
  properties: {
    cidr: str('An IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8.', 64),
    except: list('CIDRs inside cidr that do not belong to the block.', str('An IPv4 or IPv6 CIDR inside cidr.', 64), 8),
  },
  'x-kubernetes-validations': [
    {
      rule: 'isCIDR(self.cidr)',
      message: MESSAGES.cidr,
      fieldPath: '.cidr',
      [TWIN]: (b: IPBlockSpec) => isCidr(b.cidr),
    },
    {
      rule: '!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, isCIDR(e) && cidr(self.cidr).containsCIDR(e))',
      message: 'every except entry must be a CIDR inside cidr',
      fieldPath: '.except',
      [TWIN]: (b: IPBlockSpec) => !b.except || !isCidr(b.cidr) || b.except.every((e) => isCidr(e) && cidrContains(b.cidr, e)),
    },
  ],
};

const identity: Schema = str(
  'A SPIFFE ID, spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, or the same without "spiffe://". One "*" may stand first or last: spiffe://cluster.local/ns/shop/*, */sa/checkout; "*" alone is any authenticated peer.',
  253,
  {
    minLength: 1,
    'x-kubernetes-validations': [
      wildcardRule('an identity'),
      {
        rule: `self.contains('*') || self.matches(r"${IDENTITY}")`,
        message: MESSAGES.identity,
        [TWIN]: (s: string) => s.includes('*') || re(IDENTITY).test(s),
      },
    ],
  },
);

const namespaceName = str('A namespace name.', 63, { pattern: DNS_LABEL });

const source: Schema = {
  [TS_NAME]: 'AccessSource',
  type: 'object',
  description: 'Who the peer is. Every field set must match; a field matches when any of its values does, a not… field when none does.',
  properties: {
    identities: list('Peer identities (SPIFFE IDs, mTLS-authenticated).', identity, 16),
    notIdentities: list('Peer identities that do not match.', identity, 16),
    namespaces: list("Namespaces of the peer's workload (mTLS-authenticated).", namespaceName, 64),
    notNamespaces: list('Namespaces that do not match.', namespaceName, 64),
    namespaceSelector: labelSelector("Namespaces of the peer's workload, by their labels."),
    ipBlocks: list("Peer IP ranges (the connection's source address).", ipBlock, 16),
    notIpBlocks: list('Peer IP ranges that do not match.', ipBlock, 16),
  },
  'x-kubernetes-validations': [
    {
      rule: 'has(self.identities) || has(self.notIdentities) || has(self.namespaces) || has(self.notNamespaces) || has(self.namespaceSelector) || has(self.ipBlocks) || has(self.notIpBlocks)',
      message: 'a from entry must set at least one field (a misspelt field is dropped, and an empty entry would match every peer)',
      [TWIN]: (s: AccessSource) => Object.values(s).some((v) => v !== undefined),
    },
  ],
};

const portRef: Schema = {
  description: 'A destination port number (1-65535), or the name of a container port.',
  'x-kubernetes-int-or-string': true,
  // A bound for the CEL cost estimate; the rule says what a port name is.
  maxLength: 63,
  'x-kubernetes-validations': [
    {
      rule: `type(self) == int ? self >= 1 && self <= 65535 : size(self) <= 15 && self.matches(r"${PORT_NAME}") && self.matches('[a-z]') && !self.contains('--')`,
      message: 'a port is a number from 1 to 65535, or a port name (up to 15 lower-case letters, digits and "-", with at least one letter)',
      [TWIN]: (p: number | string) => (typeof p === 'number' ? Number.isInteger(p) && p >= 1 && p <= 65535 : isPortName(p)),
    },
  ],
};

const method = str('An HTTP method, such as GET (case does not matter).', 32, {
  'x-kubernetes-validations': [{ rule: `self.matches(r"${METHOD}")`, message: MESSAGES.method, [TWIN]: (s: string) => re(METHOD).test(s) }],
});

// The placement of "*" in a path is deliberately left to compile.ts, which reports it in the
// policy's status: an Accepted=False policy must be reachable for people and for tests.
const path = str('A URL path without the query: exact "/x", prefix "/x/*", suffix "*.js", or "*".', 1024, {
  'x-kubernetes-validations': [
    {
      rule: "self.startsWith('/') || self.startsWith('*')",
      message: MESSAGES.pathStart,
      [TWIN]: (s: string) => s.startsWith('/') || s.startsWith('*'),
    },
  ],
});

const host = str('A host (the HTTP Host or :authority): exact, "*.example.com" or "example.*" (case does not matter).', 253, {
  minLength: 1,
  'x-kubernetes-validations': [
    wildcardRule('a host'),
    { rule: `self.matches(r"${HOST}")`, message: MESSAGES.host, [TWIN]: (s: string) => re(HOST).test(s) },
  ],
});

const headerMatch: Schema = {
  [TS_NAME]: 'HeaderMatchSpec',
  type: 'object',
  description: 'An HTTP request header: present (no values), or with one of the values.',
  required: ['name'],
  properties: {
    name: str('The header name (case does not matter).', 256, { pattern: HEADER_NAME }),
    values: list('Values: exact, "prefix*", "*suffix" or "*". Empty: the header is present.', str('A header value.', 1024), 16),
  },
};

const target: Schema = {
  [TS_NAME]: 'AccessTarget',
  type: 'object',
  description:
    'What the peer asks for. Every field set must match; a field matches when any of its values does, a not… field when none does. methods, paths, hosts and headers need HTTP: they apply on ports that speak HTTP.',
  properties: {
    ports: list('Destination ports (the workload port, not the Service port).', portRef, 32),
    notPorts: list('Destination ports that do not match.', portRef, 32),
    methods: list('HTTP methods.', method, 16),
    notMethods: list('HTTP methods that do not match.', method, 16),
    paths: list('HTTP paths.', path, 32),
    notPaths: list('HTTP paths that do not match.', path, 32),
    hosts: list('HTTP hosts.', host, 16),
    notHosts: list('HTTP hosts that do not match.', host, 16),
    headers: list('HTTP request headers; all must match.', headerMatch, 8),
    notHeaders: list('HTTP request headers of which none may match.', headerMatch, 8),
  },
  'x-kubernetes-validations': [
    {
      rule: 'has(self.ports) || has(self.notPorts) || has(self.methods) || has(self.notMethods) || has(self.paths) || has(self.notPaths) || has(self.hosts) || has(self.notHosts) || has(self.headers) || has(self.notHeaders)',
      message: 'a to entry must set at least one field (a misspelt field is dropped, and an empty entry would match every request)',
      [TWIN]: (t: AccessTarget) => Object.values(t).some((v) => v !== undefined),
    },
  ],
};

const conditionValues = (c: ConditionSpec): string[] => [...(c.values ?? []), ...(c.notValues ?? [])];

const condition: Schema = {
  [TS_NAME]: 'ConditionSpec',
  type: 'object',
  description: 'A condition on an attribute of the connection or request: one of values matches, and none of notValues.',
  required: ['key'],
  properties: {
    key: str(`The attribute: ${CONDITION_KEYS.join(', ')} or request.headers[<name>].`, 300, {
      'x-kubernetes-validations': [
        {
          rule: `self in ${celList(CONDITION_KEYS)} || self.matches(r"${HEADER_CONDITION_KEY}")`,
          message: `key must be one of ${CONDITION_KEYS.join(', ')}, request.headers[<name>]`,
          [TWIN]: (k: string) => (CONDITION_KEYS as readonly string[]).includes(k) || re(HEADER_CONDITION_KEY).test(k),
        },
      ],
    }),
    values: list('Values, any of which must match.', str('A value.', 1024), 32),
    notValues: list('Values none of which may match.', str('A value.', 1024), 32),
  },
  'x-kubernetes-validations': [
    {
      rule: '(has(self.values) && size(self.values) > 0) || (has(self.notValues) && size(self.notValues) > 0)',
      message: 'a condition needs values or notValues',
      [TWIN]: (c: ConditionSpec) => conditionValues(c).length > 0,
    },
    {
      rule: "!(self.key in ['source.ip', 'destination.ip']) || ((has(self.values) ? self.values : []) + (has(self.notValues) ? self.notValues : [])).all(v, isIP(v) || isCIDR(v))",
      message: MESSAGES.ipValues,
      [TWIN]: (c: ConditionSpec) => !['source.ip', 'destination.ip'].includes(c.key) || conditionValues(c).every((v) => isIp(v) || isCidr(v)),
    },
    {
      rule: "self.key != 'destination.port' || ((has(self.values) ? self.values : []) + (has(self.notValues) ? self.notValues : [])).all(v, v.matches('^[0-9]{1,5}$') && int(v) >= 1 && int(v) <= 65535)",
      message: 'destination.port values are port numbers from 1 to 65535',
      [TWIN]: (c: ConditionSpec) => c.key !== 'destination.port' || conditionValues(c).every((v) => /^[0-9]{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535),
    },
  ],
};

const rule: Schema = {
  [TS_NAME]: 'AccessRule',
  type: 'object',
  description: 'A rule matches when any from entry matches (or from is empty), any to entry matches (or to is empty), and every when condition matches.',
  properties: {
    name: str('A name for logs and metrics (a lower-case DNS label); defaults to rules[<index>].', 63, { pattern: DNS_LABEL }),
    from: list('Sources; any may match. Empty: any peer.', source, 8),
    to: list('Operations; any may match. Empty: any port and request.', target, 8),
    when: list('Further conditions; all must match.', condition, 8),
  },
};

const accessPolicySpec: Schema = {
  [TS_NAME]: 'AccessPolicySpec',
  type: 'object',
  description:
    'Who may talk to the selected workloads. DENY policies are evaluated first; then, if any ALLOW policy selects a workload, a connection or request to it must match an ALLOW rule.',
  default: {},
  properties: {
    selector: labelSelector(
      "The workloads in the policy's namespace the policy applies to; absent: all of them. In the install namespace the policy is mesh-wide and the selector picks workloads of every namespace.",
    ),
    action: { type: 'string', description: 'ALLOW, DENY or AUDIT (record matches in the access log).', enum: ['ALLOW', 'DENY', 'AUDIT'], default: 'ALLOW' },
    rules: list('Rules; the policy applies its action when any matches. No rules: matches nothing (an ALLOW policy without rules allows nothing).', rule, 32, {
      'x-kubernetes-validations': [
        {
          rule: 'self.all(r, !has(r.name) || self.exists_one(o, has(o.name) && o.name == r.name))',
          message: 'rule names must be unique',
          [TWIN]: (rs: AccessRule[]) => {
            const names = rs.flatMap((r) => (r.name === undefined ? [] : [r.name]));
            return new Set(names).size === names.length;
          },
        },
      ],
    }),
  },
};

// ---- MeshTLSPolicy ---------------------------------------------------------------------------------

const mtlsMode = (description: string): Schema => ({ type: 'string', description, enum: ['STRICT', 'PERMISSIVE'] });

const portMtls: Schema = {
  [TS_NAME]: 'PortMtlsSpec',
  type: 'object',
  description: 'The mTLS mode of one destination port.',
  required: ['port', 'mode'],
  properties: {
    port: { type: 'integer', format: 'int32', minimum: 1, maximum: 65535, description: 'A destination (container) port.' },
    mode: mtlsMode('STRICT or PERMISSIVE for this port.'),
  },
};

const meshTLSPolicySpec: Schema = {
  [TS_NAME]: 'MeshTLSPolicySpec',
  type: 'object',
  description:
    'Whether the selected workloads accept plaintext. STRICT: only mTLS from mesh peers; PERMISSIVE: plaintext too. The most specific policy wins: workload selector, then namespace, then mesh-wide (install namespace).',
  required: ['mode'],
  properties: {
    selector: labelSelector("The workloads in the policy's namespace the policy applies to; absent: all of them. In the install namespace the policy is mesh-wide."),
    mode: mtlsMode('STRICT or PERMISSIVE.'),
    ports: list('Per-port overrides of mode.', portMtls, 64, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['port'] }),
  },
};

// ---- status (both kinds) ---------------------------------------------------------------------------

const statusCondition: Schema = {
  [TS_NAME]: 'PolicyCondition',
  type: 'object',
  description: 'A condition (metav1.Condition): Accepted, ResolvedRefs or Programmed.',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: str('The condition type.', 316, { pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$' }),
    status: { type: 'string', description: 'True, False or Unknown.', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0, description: 'The metadata.generation this condition describes.' },
    lastTransitionTime: { type: 'string', format: 'date-time', description: 'When the status last changed.' },
    reason: str('A CamelCase reason.', 1024, { minLength: 1, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' }),
    message: str('What a person should know, and do.', 32768),
  },
};

const policyStatus: Schema = {
  [TS_NAME]: 'PolicyStatus',
  type: 'object',
  description: 'Written by the Weft controller: is the policy valid, and is it in force where it applies.',
  properties: {
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0, description: 'The metadata.generation the status describes.' },
    conditions: list('Accepted, ResolvedRefs and Programmed.', statusCondition, 8, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
    selectedWorkloads: count('Meshed workloads the policy applies to.'),
    unmeshedWorkloads: count('Selected pods that are not in the mesh (the policy cannot protect them).'),
    nodes: {
      [TS_NAME]: 'PolicyNodesStatus',
      type: 'object',
      description: 'Nodes that host selected workloads, and whether their agents enforce this generation.',
      properties: {
        programmed: count('Nodes whose agent enforces this generation.'),
        total: count('Nodes hosting selected meshed workloads.'),
        pending: list('Nodes not programmed yet (the first few), with why.', str('A node.', 1024), 100),
      },
    },
    programmedNodes: str('programmed/total, for kubectl get.', 32),
    lastAccepted: {
      [TS_NAME]: 'PolicyLastAccepted',
      type: 'object',
      description:
        'The last generation whose spec was valid, and that spec: what agents enforce while a newer spec is refused. Kept here so that a restarted controller enforces it too, instead of nothing.',
      required: ['generation', 'spec'],
      properties: {
        generation: { type: 'integer', format: 'int64', minimum: 1, description: 'The metadata.generation that was accepted.' },
        spec: { type: 'object', description: 'Its spec, as it was.', 'x-kubernetes-preserve-unknown-fields': true, [TS_TYPE]: 'Record<string, unknown>' },
      },
    },
  },
};

// ---- the CRDs --------------------------------------------------------------------------------------

function root(kind: string, spec: Schema, specRequired: boolean): Schema {
  return {
    [TS_NAME]: kind,
    type: 'object',
    description: spec.description ?? '',
    ...(specRequired ? { required: ['spec'] } : {}),
    properties: {
      apiVersion: { type: 'string', description: `The API version: ${POLICY_GROUP}/${POLICY_VERSION}.`, [TS_TYPE]: `'${POLICY_GROUP}/${POLICY_VERSION}'` },
      kind: { type: 'string', description: `The kind: ${kind}.`, [TS_TYPE]: `'${kind}'` },
      metadata: { type: 'object', [TS_TYPE]: 'V1ObjectMeta' },
      spec,
      status: policyStatus,
    },
  };
}

export const accessPolicySchema: Schema = root('AccessPolicy', accessPolicySpec, false);
export const meshTLSPolicySchema: Schema = root('MeshTLSPolicy', meshTLSPolicySpec, true);

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

const conditionColumn = (type: string): PrinterColumn => ({
  name: type,
  type: 'string',
  jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
  description: `The ${type} condition.`,
});

const commonColumns: PrinterColumn[] = [
  conditionColumn('Accepted'),
  conditionColumn('Programmed'),
  { name: 'Workloads', type: 'integer', jsonPath: '.status.selectedWorkloads', description: 'Meshed workloads the policy applies to.' },
  { name: 'Nodes', type: 'string', jsonPath: '.status.programmedNodes', description: 'Nodes enforcing this generation / nodes that must.' },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

/** An apiextensions.k8s.io/v1 CustomResourceDefinition, as much of it as Weft writes. */
export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    scope: 'Namespaced';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: Schema };
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
    }[];
  };
}

function crd(kind: string, plural: string, shortName: string, schema: Schema, columns: PrinterColumn[]): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${POLICY_GROUP}`, labels: { 'app.kubernetes.io/name': 'weft', 'app.kubernetes.io/part-of': 'weft' } },
    spec: {
      group: POLICY_GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: [shortName], categories: ['weft'] },
      scope: 'Namespaced',
      versions: [{ name: POLICY_VERSION, served: true, storage: true, schema: { openAPIV3Schema: schema }, subresources: { status: {} }, additionalPrinterColumns: columns }],
    },
  };
}

export const accessPolicyCrd: CustomResourceDefinition = crd('AccessPolicy', ACCESS_POLICY_PLURAL, 'ap', accessPolicySchema, [
  { name: 'Action', type: 'string', jsonPath: '.spec.action', description: 'ALLOW, DENY or AUDIT.' },
  ...commonColumns,
]);

export const meshTLSPolicyCrd: CustomResourceDefinition = crd('MeshTLSPolicy', MESH_TLS_POLICY_PLURAL, 'mtp', meshTLSPolicySchema, [
  { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'STRICT or PERMISSIVE.' },
  ...commonColumns,
]);

export const CRDS: readonly CustomResourceDefinition[] = [accessPolicyCrd, meshTLSPolicyCrd];
