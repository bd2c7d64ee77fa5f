// A real agent server for tests that are about what reaches it (floods, hostile bytes): real TLS
// 1.3 and HTTP/2, the real store, registry, sign handler and mesh CA, listening on 127.0.0.1.
// The caller brings the authenticator (and with it the TokenReviewer and the limits), because
// that is what such tests vary. Close it with close(); it stops everything it started.
import type { V1Pod } from '@kubernetes/client-node';
import { webcrypto } from 'node:crypto';
import type { Resource, Workload } from '../../api/agent-sync.ts';
import { createLogger } from '../../api/log.ts';
import { MeshCa } from '../ca/ca.ts';
import { ECDSA_P256, createRoot } from '../ca/root.ts';
import { x509 } from '../../api/x509.ts';
import { createControllerMetrics } from '../metrics.ts';
import type { ControllerMetrics } from '../metrics.ts';
import { RevisionedStore } from '../state/store.ts';
import { controllerHostnames, issueServingCert } from '../tls/serving-cert.ts';
import type { AgentAuthenticator, TokenReviewResult } from './agent-auth.ts';
import { AgentRegistry } from './agent-registry.ts';
import { createAgentServer } from './agent-server.ts';
import { meshCaSigner } from './signer.ts';
import type { AgentServerOptions } from './agent-server.ts';
import type { SourceLimiter } from './source-limiter.ts';
import { TestAgent } from './test-agent.ts';

export const TEST_TRUST_DOMAIN = 'cluster.local';

export interface TestServer {
  url: string;
  ca: string;
  store: RevisionedStore;
  registry: AgentRegistry;
  metrics: ControllerMetrics;
  /** Open sync streams. */
  syncStreams(): number;
  /** A test agent connected to this server. */
  agent(token?: string, localAddress?: string): Promise<TestAgent>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  authenticator: Pick<AgentAuthenticator, 'authenticate'>;
  limiter?: SourceLimiter;
  /** Nodes with a pod of service account shop/cart each. */
  nodes?: string[];
  server?: Partial<AgentServerOptions>;
}

/** What the API server answers for a token bound to `node`'s agent. */
export function agentReview(node: string): TokenReviewResult {
  return { authenticated: true, user: { username: 'system:serviceaccount:weft-system:weft-agent', extra: { 'authentication.kubernetes.io/node-name': [node] } } };
}

/** Shaped like a projected service-account token (a JWT with `exp`), unsigned: only the fake reviewer reads it. */
export function fakeJwt(subject: string, expiresInSeconds = 3600): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'RS256', kid: 'test' })}.${part({ sub: subject, exp: Math.floor(Date.now() / 1000) + expiresInSeconds, jti: crypto.randomUUID() })}.c2ln`;
}

export async function csrPem(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_P256, name: 'CN=ignored' });
  return csr.toString('pem');
}

export async function startTestServer(opts: TestServerOptions): Promise<TestServer> {
  const nodes = opts.nodes ?? ['node-1'];
  const root = await createRoot({ trustDomain: TEST_TRUST_DOMAIN });
  const serving = await issueServingCert(root.root, { spiffeId: `spiffe://${TEST_TRUST_DOMAIN}/ns/weft-system/sa/weft-controller`, hosts: [...controllerHostnames('weft-system'), '127.0.0.1'] });
  const store = new RevisionedStore({ config: { trustDomain: TEST_TRUST_DOMAIN, mtlsMode: 'PERMISSIVE' }, debounceMs: 2, maxDelayMs: 20 });
  const registry = new AgentRegistry();
  const metrics = createControllerMetrics({ connectedAgents: () => registry.connectedCount() });
  const pods: V1Pod[] = nodes.map((node) => ({ metadata: { namespace: 'shop', name: `cart-${node}` }, spec: { nodeName: node, serviceAccountName: 'cart', containers: [] }, status: { phase: 'Running' } }));
  for (const node of nodes) store.upsert(testWorkload(`cart-${node}`, node));
  store.flush();
  const log = createLogger({}, { level: process.env.WEFT_TEST_LOG === '1' ? 'debug' : 'error' });
  const server = createAgentServer({
    host: '127.0.0.1',
    port: 0,
    tls: { cert: serving.certPem, key: serving.keyPem },
    store,
    registry,
    authenticator: opts.authenticator,
    ...(opts.limiter ? { limiter: opts.limiter } : {}),
    pods: { list: (ns) => pods.filter((p) => !ns || p.metadata?.namespace === ns) },
    signer: meshCaSigner(new MeshCa(root.root)),
    trustDomain: TEST_TRUST_DOMAIN,
    ready: () => true,
    metrics,
    log,
    lingerMs: 200,
    ...opts.server,
  });
  const { port } = await server.listen();
  const url = `https://127.0.0.1:${port}`;
  const agents = new Set<TestAgent>();
  return {
    url,
    ca: root.certificatePem,
    store,
    registry,
    metrics,
    syncStreams: () => server.syncStreams(),
    async agent(token, localAddress) {
      const a = await TestAgent.connect({ url, ca: root.certificatePem, servername: 'weft-controller', ...(token ? { token } : {}), ...(localAddress ? { localAddress } : {}) });
      agents.add(a);
      a.session.once('close', () => agents.delete(a));
      return a;
    },
    async close() {
      for (const a of agents) a.close();
      await server.close(200);
      store.close();
    },
  };
}

/** A meshed workload in namespace shop on `node`, labelled app=`app` (its name by default). */
export function testWorkload(name: string, node: string, app = name): Resource {
  const value: Workload = {
    key: `shop/${name}`,
    uid: `uid-${name}`,
    namespace: 'shop',
    name,
    node,
    ips: ['10.0.0.1'],
    serviceAccount: 'cart',
    identity: `spiffe://${TEST_TRUST_DOMAIN}/ns/shop/sa/cart`,
    meshed: true,
    labels: { app },
    namedPorts: {},
  };
  return { kind: 'Workload', value };
}
