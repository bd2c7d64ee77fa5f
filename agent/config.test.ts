// The agent's configuration from its environment: the RequestMirror bounds (chart values
// agent.routes.mirror), their defaults, and values out of bounds refused at start with a message
// that names the variable.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { configFromEnv } from './config.ts';
import { DEFAULT_MIRROR_LIMITS, MIRROR_LIMIT_BOUNDS } from './route/mirror-limits.ts';

/** configFromEnv() with exactly this environment (and a node name, which it requires). */
function withEnv(env: Record<string, string>): ReturnType<typeof configFromEnv> {
  const saved = process.env;
  process.env = { NODE_NAME: 'node-a', ...env };
  try {
    return configFromEnv();
  } finally {
    process.env = saved;
  }
}

t.test('RequestMirror bounds: the defaults without configuration', async (t) => {
  t.same(withEnv({}).routeMirror, { maxBodyBytes: 65536, maxInFlight: 128, timeoutMs: 10_000 });
  t.same(withEnv({}).routeMirror, DEFAULT_MIRROR_LIMITS);
  t.same(withEnv({ WEFT_ROUTE_MIRROR_MAX_BODY_BYTES: '', WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT: ' ' }).routeMirror, DEFAULT_MIRROR_LIMITS, 'an empty value is no value');
});

t.test('RequestMirror bounds: from WEFT_ROUTE_MIRROR_*', async (t) => {
  const c = withEnv({ WEFT_ROUTE_MIRROR_MAX_BODY_BYTES: '1048576', WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT: '16', WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS: '2.5' });
  t.same(c.routeMirror, { maxBodyBytes: 1_048_576, maxInFlight: 16, timeoutMs: 2500 });
  t.same(withEnv({ WEFT_ROUTE_MIRROR_MAX_BODY_BYTES: '0' }).routeMirror.maxBodyBytes, 0, '0: only requests without a body are copied');
  t.same(withEnv({ WEFT_ROUTE_MIRROR_MAX_BODY_BYTES: '4194304', WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT: '4096', WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS: '300' }).routeMirror, { maxBodyBytes: 4_194_304, maxInFlight: 4096, timeoutMs: 300_000 }, 'the maximums');
});

t.test('RequestMirror bounds: a value out of bounds or not a number stops the agent with its name', async (t) => {
  const bad: [string, string, RegExp][] = [
    ['WEFT_ROUTE_MIRROR_MAX_BODY_BYTES', '-1', /WEFT_ROUTE_MIRROR_MAX_BODY_BYTES must be a whole number from 0 to 4194304, not "-1"/],
    ['WEFT_ROUTE_MIRROR_MAX_BODY_BYTES', '4194305', /from 0 to 4194304/],
    ['WEFT_ROUTE_MIRROR_MAX_BODY_BYTES', '64KiB', /not "64KiB"/],
    ['WEFT_ROUTE_MIRROR_MAX_BODY_BYTES', '1.5', /whole number/],
    ['WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT', '0', /WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT must be a whole number from 1 to 4096, not "0"/],
    ['WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT', '4097', /from 1 to 4096/],
    ['WEFT_ROUTE_MIRROR_MAX_IN_FLIGHT', 'many', /not "many"/],
    ['WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS', '0', /WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS must be a number of seconds from 0.001 to 300, not "0"/],
    ['WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS', '301', /from 0.001 to 300/],
    ['WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS', '10s', /not "10s"/],
    ['WEFT_ROUTE_MIRROR_TIMEOUT_SECONDS', 'Infinity', /not "Infinity"/],
  ];
  for (const [name, value, message] of bad) {
    t.throws(() => withEnv({ [name]: value }), { message, code: 'CONFIG' }, `${name}=${value} is refused`);
  }
});

t.test("the chart's schema has the agent's bounds, and values.yaml its defaults", async (t) => {
  type Bound = { minimum: number; maximum: number };
  const schema = JSON.parse(readFileSync(new URL('../helm/weft/values.schema.json', import.meta.url), 'utf8')) as {
    properties: { agent: { properties: { routes: { properties: { mirror: { properties: Record<keyof typeof MIRROR_LIMIT_BOUNDS, Bound> } } } } } };
  };
  const inSchema = schema.properties.agent.properties.routes.properties.mirror.properties;
  for (const [k, b] of Object.entries(MIRROR_LIMIT_BOUNDS)) {
    const s = inSchema[k as keyof typeof MIRROR_LIMIT_BOUNDS];
    t.same({ min: s.minimum, max: s.maximum }, b, `agent.routes.mirror.${k}: ${b.min} to ${b.max} in both`);
  }
  const values = readFileSync(new URL('../helm/weft/values.yaml', import.meta.url), 'utf8');
  const block = /\n {2}routes:\n(?: {4}#.*\n)*? {4}mirror:\n((?: {6}.*\n)+)/.exec(values)?.[1] ?? '';
  const v: Record<string, number> = Object.fromEntries([...block.matchAll(/^ {6}(\w+): (\S+)$/gm)].map((m) => [m[1] ?? '', Number(m[2])]));
  t.same({ maxBodyBytes: v.maxBodyBytes, maxInFlight: v.maxInFlight, timeoutMs: (v.timeoutSeconds ?? NaN) * 1000 }, DEFAULT_MIRROR_LIMITS, `values.yaml's defaults are the agent's (${block.trim()})`);
});
