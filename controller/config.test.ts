import t from 'tap';
import { ConfigError, DEFAULT_AGENT_API_LIMITS, parseConfig, parseListen } from './config.ts';

t.test('defaults: the design names and ports, PERMISSIVE, a CA required', async (t) => {
  const c = parseConfig(['--dev-ca'], {});
  t.equal(c.trustDomain, 'cluster.local');
  t.equal(c.mtlsMode, 'PERMISSIVE');
  t.equal(c.installNamespace, 'weft-system');
  t.strictSame(c.agentListen, { host: undefined, port: 15012 });
  t.strictSame(c.healthListen, { host: undefined, port: 15014 });
  t.strictSame(c.agentServiceAccount, { namespace: 'weft-system', name: 'weft-agent' });
  t.equal(c.devCa, true);
  t.throws(() => parseConfig([], {}), ConfigError, 'no CA at all is refused');
  t.throws(() => parseConfig(['--ca-cert', 'a.pem'], {}), /go together/);
});

t.test('flags win over environment variables', async (t) => {
  const env = { WEFT_TRUST_DOMAIN: 'env.example', WEFT_MTLS_MODE: 'strict', WEFT_CA_CERT: '/ca.pem', WEFT_CA_KEY: '/ca.key', WEFT_TOKEN_AUDIENCES: 'weft, other ' };
  const fromEnv = parseConfig([], env);
  t.equal(fromEnv.trustDomain, 'env.example');
  t.equal(fromEnv.mtlsMode, 'STRICT');
  t.equal(fromEnv.caCertFile, '/ca.pem');
  t.strictSame(fromEnv.tokenAudiences, ['weft', 'other']);
  const flagged = parseConfig(['--trust-domain', 'flag.example', '--listen', '127.0.0.1:0', '--serving-host', '10.0.0.1,ctl.local'], env);
  t.equal(flagged.trustDomain, 'flag.example');
  t.strictSame(flagged.agentListen, { host: '127.0.0.1', port: 0 });
  t.strictSame(flagged.servingHosts, ['10.0.0.1', 'ctl.local']);
});

t.test('mistakes name the flag', async (t) => {
  t.throws(() => parseConfig(['--dev-ca', '--mtls-mode', 'sometimes'], {}), /--mtls-mode/);
  t.throws(() => parseConfig(['--dev-ca', '--trust-domain', 'Bad_Domain'], {}), /--trust-domain/);
  t.throws(() => parseConfig(['--dev-ca', '--agent-service-account', 'weft-agent'], {}), /NAMESPACE\/NAME/);
  t.throws(() => parseConfig(['--dev-ca', '--log-level', 'loud'], {}), /--log-level/);
  t.throws(() => parseConfig(['--dev-ca', '--unknown'], {}), ConfigError);
});

t.test('listen addresses', async (t) => {
  t.strictSame(parseListen(':15012', 'x'), { host: undefined, port: 15012 });
  t.strictSame(parseListen('0.0.0.0:1', 'x'), { host: '0.0.0.0', port: 1 });
  t.strictSame(parseListen('[::1]:8080', 'x'), { host: '::1', port: 8080 });
  t.throws(() => parseListen('15012', '--listen'), /--listen/);
  t.throws(() => parseListen(':99999', '--listen'), /--listen/);
});

t.test('agent API limits: defaults, flags, variables, and only positive numbers', async (t) => {
  t.strictSame(parseConfig(['--dev-ca'], {}).agentApiLimits, DEFAULT_AGENT_API_LIMITS);
  const c = parseConfig(['--dev-ca', '--review-concurrency', '4', '--source-review-rate', '0.5'], { WEFT_SOURCE_CONNECTIONS: '3', WEFT_TOKEN_CACHE_TTL: '60', WEFT_REVIEW_CONCURRENCY: '99' });
  t.match(c.agentApiLimits, { reviewConcurrency: 4, sourceReviewRate: 0.5, sourceConnections: 3, tokenCacheTtlSeconds: 60, reviewQueue: 64 });
  t.throws(() => parseConfig(['--dev-ca', '--review-queue', '0'], {}), /--review-queue: expected a positive integer/);
  t.throws(() => parseConfig(['--dev-ca', '--source-review-burst', '2.5'], {}), /--source-review-burst/);
  t.throws(() => parseConfig(['--dev-ca'], { WEFT_SOURCE_REVIEW_RATE: 'fast' }), /--source-review-rate: expected a positive number/);
});

t.test('workload certificate lifetime: 24 h by default, a flag or variable, never under a minute', async (t) => {
  t.equal(parseConfig(['--dev-ca'], {}).workloadCertTtlSeconds, 86_400);
  t.equal(parseConfig(['--dev-ca', '--workload-cert-ttl', '3600'], { WEFT_WORKLOAD_CERT_TTL: '120' }).workloadCertTtlSeconds, 3600);
  t.equal(parseConfig(['--dev-ca'], { WEFT_WORKLOAD_CERT_TTL: '60' }).workloadCertTtlSeconds, 60);
  t.throws(() => parseConfig(['--dev-ca', '--workload-cert-ttl', '59'], {}), /--workload-cert-ttl: at least 60 seconds/);
  t.throws(() => parseConfig(['--dev-ca', '--workload-cert-ttl', '1h'], {}), /--workload-cert-ttl: expected a positive integer/);
});
