// The controller's settings: command-line flags, each with an environment variable for the chart
// to set (a flag wins over its variable). Parsed and checked in one place, so that main.ts only
// deals with a valid ControllerConfig and a mistake stops the process with a message that names
// the flag.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { CONTROLLER_PORT } from '../api/agent-sync.ts';
import type { MeshConfig } from '../api/agent-sync.ts';
import { isLogLevel } from '../api/log.ts';
import { DEFAULT_WORKLOAD_TTL_MS, MIN_WORKLOAD_TTL_MS } from './ca/ca.ts';
import type { LogLevel } from '../api/log.ts';

export interface ListenAddress {
  /** Undefined: every address (IPv4 and IPv6). */
  host: string | undefined;
  port: number;
}

export interface ControllerConfig {
  /** Path to a kubeconfig; undefined means in-cluster, else the usual default lookup. */
  kubeconfig: string | undefined;
  trustDomain: string;
  mtlsMode: MeshConfig['mtlsMode'];
  installNamespace: string;
  agentListen: ListenAddress;
  healthListen: ListenAddress;
  /** Root CA PEM files; both or neither. */
  caCertFile: string | undefined;
  caKeyFile: string | undefined;
  /** Without CA files: make a throw-away root (development only). */
  devCa: boolean;
  /** Where to write the trust bundle (the root certificate, never the key), e.g. for dev agents. */
  trustBundleOut: string | undefined;
  agentServiceAccount: { namespace: string; name: string };
  /** Audiences agent tokens must carry; empty means the API server's own. */
  tokenAudiences: string[];
  /** Extra names (DNS or IP) for the serving certificate, besides the Service's. */
  servingHosts: string[];
  logLevel: LogLevel;
  /** This replica's name in the leader Lease and in Events (the pod name in a cluster). */
  identity: string;
  /** Limits of the agent API against hostile callers (controller/README.md, "Hostile callers"). */
  agentApiLimits: AgentApiLimits;
  /** Lifetime of the workload certificates the mesh CA issues; agents renew at about half. */
  workloadCertTtlSeconds: number;
}

export interface AgentApiLimits {
  /** TokenReviews in flight at once, from all sources. */
  reviewConcurrency: number;
  /** TokenReviews waiting for a slot before further ones are refused. */
  reviewQueue: number;
  /** Reviews per second one source address may cause, sustained, and at once. */
  sourceReviewRate: number;
  sourceReviewBurst: number;
  /** Requests of one source waiting for a review at once. */
  sourcePendingReviews: number;
  /** Unauthenticated connections of one source. */
  sourceConnections: number;
  /** Longest an accepted token is trusted without a new review (its own expiry comes first). */
  tokenCacheTtlSeconds: number;
}

export const DEFAULT_AGENT_API_LIMITS: AgentApiLimits = {
  reviewConcurrency: 16,
  reviewQueue: 64,
  sourceReviewRate: 2,
  sourceReviewBurst: 20,
  sourcePendingReviews: 4,
  sourceConnections: 16,
  tokenCacheTtlSeconds: 300,
};

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  override readonly name = 'ConfigError';
}

export const USAGE = `usage: weft-controller [flags]
  --kubeconfig PATH            KUBECONFIG            kubeconfig file (default: in-cluster, else ~/.kube/config)
  --trust-domain NAME          WEFT_TRUST_DOMAIN     SPIFFE trust domain (default cluster.local)
  --mtls-mode MODE             WEFT_MTLS_MODE        mesh-wide mTLS mode: PERMISSIVE (default) or STRICT
  --namespace NAME             WEFT_NAMESPACE        install namespace (default weft-system)
  --listen HOST:PORT           WEFT_LISTEN           agent API (default :${CONTROLLER_PORT})
  --health-listen HOST:PORT    WEFT_HEALTH_LISTEN    /healthz, /readyz, /metrics, /agents (default :15014)
  --ca-cert PATH               WEFT_CA_CERT          mesh root certificate (PEM)
  --ca-key PATH                WEFT_CA_KEY           mesh root key (PEM)
  --dev-ca                     WEFT_DEV_CA=1         no CA files: generate a throw-away root (development)
  --trust-bundle-out PATH      WEFT_TRUST_BUNDLE_OUT write the root certificate here (for agents in development)
  --agent-service-account NS/NAME  WEFT_AGENT_SA     the agents' service account (default weft-system/weft-agent)
  --token-audience AUD[,AUD]   WEFT_TOKEN_AUDIENCES  audiences agent tokens must be issued for (default: the API server's)
  --serving-host NAME[,NAME]   WEFT_SERVING_HOSTS    extra DNS names / IPs in the serving certificate
  --log-level LEVEL            WEFT_LOG_LEVEL        debug, info (default), warn, error
  --identity NAME              POD_NAME              this replica's name in the leader Lease and Events (default host-pid)
  --workload-cert-ttl SECONDS  WEFT_WORKLOAD_CERT_TTL  workload certificate lifetime (default ${DEFAULT_WORKLOAD_TTL_MS / 1000}, at least ${MIN_WORKLOAD_TTL_MS / 1000})
agent API limits (checked before any TokenReview; see controller/README.md):
  --review-concurrency N       WEFT_REVIEW_CONCURRENCY      TokenReviews in flight at once (default 16)
  --review-queue N             WEFT_REVIEW_QUEUE            TokenReviews waiting for a slot (default 64)
  --source-review-rate R       WEFT_SOURCE_REVIEW_RATE      reviews per second per source address (default 2)
  --source-review-burst N      WEFT_SOURCE_REVIEW_BURST     reviews at once per source address (default 20)
  --source-pending-reviews N   WEFT_SOURCE_PENDING_REVIEWS  requests per source waiting for a review (default 4)
  --source-connections N       WEFT_SOURCE_CONNECTIONS      unauthenticated connections per source (default 16)
  --token-cache-ttl SECONDS    WEFT_TOKEN_CACHE_TTL         longest an accepted token is trusted without a review (default 300)`;

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): ControllerConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        kubeconfig: { type: 'string' },
        'trust-domain': { type: 'string' },
        'mtls-mode': { type: 'string' },
        namespace: { type: 'string' },
        listen: { type: 'string' },
        'health-listen': { type: 'string' },
        'ca-cert': { type: 'string' },
        'ca-key': { type: 'string' },
        'dev-ca': { type: 'boolean' },
        'trust-bundle-out': { type: 'string' },
        'agent-service-account': { type: 'string' },
        'token-audience': { type: 'string' },
        'serving-host': { type: 'string' },
        'log-level': { type: 'string' },
        identity: { type: 'string' },
        'review-concurrency': { type: 'string' },
        'review-queue': { type: 'string' },
        'source-review-rate': { type: 'string' },
        'source-review-burst': { type: 'string' },
        'source-pending-reviews': { type: 'string' },
        'source-connections': { type: 'string' },
        'token-cache-ttl': { type: 'string' },
        'workload-cert-ttl': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const str = (flag: string, envName: string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    const e = env[envName];
    return e !== undefined && e !== '' ? e : undefined;
  };

  const trustDomain = str('trust-domain', 'WEFT_TRUST_DOMAIN') ?? 'cluster.local';
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(trustDomain)) throw new ConfigError(`--trust-domain: "${trustDomain}" is not a valid SPIFFE trust domain`);

  const mtlsMode = (str('mtls-mode', 'WEFT_MTLS_MODE') ?? 'PERMISSIVE').toUpperCase();
  if (mtlsMode !== 'PERMISSIVE' && mtlsMode !== 'STRICT') throw new ConfigError(`--mtls-mode: must be PERMISSIVE or STRICT, not "${mtlsMode}"`);

  const installNamespace = str('namespace', 'WEFT_NAMESPACE') ?? 'weft-system';
  const caCertFile = str('ca-cert', 'WEFT_CA_CERT');
  const caKeyFile = str('ca-key', 'WEFT_CA_KEY');
  const devCa = values['dev-ca'] === true || env.WEFT_DEV_CA === '1' || env.WEFT_DEV_CA === 'true';
  if ((caCertFile === undefined) !== (caKeyFile === undefined)) throw new ConfigError('--ca-cert and --ca-key go together');
  if (caCertFile === undefined && !devCa) throw new ConfigError('no mesh CA: give --ca-cert and --ca-key, or --dev-ca for a throw-away root');

  const saText = str('agent-service-account', 'WEFT_AGENT_SA') ?? 'weft-system/weft-agent';
  const [saNs, saName, ...rest] = saText.split('/');
  if (!saNs || !saName || rest.length > 0) throw new ConfigError(`--agent-service-account: expected NAMESPACE/NAME, not "${saText}"`);

  const logLevel = str('log-level', 'WEFT_LOG_LEVEL') ?? 'info';
  if (!isLogLevel(logLevel)) throw new ConfigError(`--log-level: must be debug, info, warn or error, not "${logLevel}"`);

  // Positive numbers only: a zero would refuse every agent, and no limit is not an option.
  const positive = (flag: string, envName: string, fallback: number, integer = true): number => {
    const text = str(flag, envName);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new ConfigError(`--${flag}: expected a positive ${integer ? 'integer' : 'number'}, not "${text}"`);
    return n;
  };
  const d = DEFAULT_AGENT_API_LIMITS;
  const agentApiLimits: AgentApiLimits = {
    reviewConcurrency: positive('review-concurrency', 'WEFT_REVIEW_CONCURRENCY', d.reviewConcurrency),
    reviewQueue: positive('review-queue', 'WEFT_REVIEW_QUEUE', d.reviewQueue),
    sourceReviewRate: positive('source-review-rate', 'WEFT_SOURCE_REVIEW_RATE', d.sourceReviewRate, false),
    sourceReviewBurst: positive('source-review-burst', 'WEFT_SOURCE_REVIEW_BURST', d.sourceReviewBurst),
    sourcePendingReviews: positive('source-pending-reviews', 'WEFT_SOURCE_PENDING_REVIEWS', d.sourcePendingReviews),
    sourceConnections: positive('source-connections', 'WEFT_SOURCE_CONNECTIONS', d.sourceConnections),
    tokenCacheTtlSeconds: positive('token-cache-ttl', 'WEFT_TOKEN_CACHE_TTL', d.tokenCacheTtlSeconds),
  };

  const workloadCertTtlSeconds = positive('workload-cert-ttl', 'WEFT_WORKLOAD_CERT_TTL', DEFAULT_WORKLOAD_TTL_MS / 1000);
  if (workloadCertTtlSeconds < MIN_WORKLOAD_TTL_MS / 1000) {
    throw new ConfigError(`--workload-cert-ttl: at least ${MIN_WORKLOAD_TTL_MS / 1000} seconds, not ${workloadCertTtlSeconds}`);
  }

  return {
    kubeconfig: str('kubeconfig', 'KUBECONFIG'),
    trustDomain,
    mtlsMode,
    installNamespace,
    agentListen: parseListen(str('listen', 'WEFT_LISTEN') ?? `:${CONTROLLER_PORT}`, '--listen'),
    healthListen: parseListen(str('health-listen', 'WEFT_HEALTH_LISTEN') ?? ':15014', '--health-listen'),
    caCertFile,
    caKeyFile,
    devCa: caCertFile === undefined && devCa,
    trustBundleOut: str('trust-bundle-out', 'WEFT_TRUST_BUNDLE_OUT'),
    agentServiceAccount: { namespace: saNs, name: saName },
    tokenAudiences: list(str('token-audience', 'WEFT_TOKEN_AUDIENCES')),
    servingHosts: list(str('serving-host', 'WEFT_SERVING_HOSTS')),
    logLevel,
    identity: str('identity', 'POD_NAME') ?? `${hostname()}-${process.pid}`,
    agentApiLimits,
    workloadCertTtlSeconds,
  };
}

/** `HOST:PORT`, `:PORT` or `[v6]:PORT`. */
export function parseListen(text: string, flag: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${flag}: expected HOST:PORT or :PORT, not "${text}"`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}

function list(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
