// Weft workload identities: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// Parsing is strict on purpose: the string is compared byte for byte against policy and against the
// identity a client expects its server to have, so there must be exactly one spelling of each
// identity. No percent-encoding, no upper case, no empty or dot segments, no port, query or fragment.

import { IdentityError } from './errors.ts';

export type SpiffeId = {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
};

const SCHEME = 'spiffe://';
// SPIFFE ID spec: trust domain characters are lower-case letters, digits, '.', '-' and '_'.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
// Kubernetes: a namespace is a DNS-1123 label, a service account name a DNS-1123 subdomain.
const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
const MAX_SUBDOMAIN = 253;

export function formatSpiffeId(id: SpiffeId): string {
  checkParts(id, () => JSON.stringify(id));
  return `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a SPIFFE ID, throwing IdentityError SPIFFE_ID_INVALID if it is not in the canonical form. */
export function parseSpiffeId(uri: string): SpiffeId {
  const id = tryParseSpiffeId(uri);
  if (!id) throw new IdentityError('SPIFFE_ID_INVALID', `${JSON.stringify(uri)} is not a spiffe://<td>/ns/<ns>/sa/<sa> identity`);
  return id;
}

export function tryParseSpiffeId(uri: string): SpiffeId | undefined {
  if (!uri.startsWith(SCHEME)) return undefined;
  const parts = uri.slice(SCHEME.length).split('/');
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') return undefined;
  const id = { trustDomain: parts[0] as string, namespace: parts[2] as string, serviceAccount: parts[4] as string };
  return partsValid(id) ? id : undefined;
}

export function isSpiffeId(uri: string): boolean {
  return tryParseSpiffeId(uri) !== undefined;
}

function partsValid(id: SpiffeId): boolean {
  return (
    TRUST_DOMAIN.test(id.trustDomain) &&
    DNS1123_LABEL.test(id.namespace) &&
    id.serviceAccount.length <= MAX_SUBDOMAIN &&
    DNS1123_SUBDOMAIN.test(id.serviceAccount)
  );
}

function checkParts(id: SpiffeId, describe: () => string): void {
  if (!partsValid(id)) throw new IdentityError('SPIFFE_ID_INVALID', `${describe()} cannot form a SPIFFE ID`);
}
