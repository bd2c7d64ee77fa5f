// The schema is the one source: the CRD YAML in the chart and types.gen.ts are exactly what
// scripts/gen-api.ts makes of it, `--check` catches a stale file, and every CEL rule has a twin.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { generate, toYaml } from '../../scripts/gen-api.ts';
import { CRDS, TWIN } from './schema.ts';
import type { Schema } from './schema.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const GEN = join(REPO, 'scripts/gen-api.ts');
const run = promisify(execFile);

async function genApi(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [GEN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

t.test('the generated files in the repository are current', async (t) => {
  const files = generate();
  t.same([...files.keys()].sort(), ['api/policy/types.gen.ts', 'helm/weft/crds/weft.dev_accesspolicies.yaml', 'helm/weft/crds/weft.dev_meshtlspolicies.yaml']);
  for (const [rel, content] of files) t.equal(await readFile(join(REPO, rel), 'utf8'), content, `${rel} is current (else: node scripts/gen-api.ts)`);
  const check = await genApi(['--check']);
  t.equal(check.code, 0, `gen-api --check passes: ${check.stderr}`);
});

t.test('--check fails on a stale or missing file and writes nothing; a plain run repairs it', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'weft-gen-api-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const missing = await genApi(['--check', '--root', root]);
  t.equal(missing.code, 1, 'missing files are stale');
  t.match(missing.stderr, /stale generated files .*api\/policy\/types\.gen\.ts/);
  await t.rejects(readFile(join(root, 'api/policy/types.gen.ts')), 'check mode wrote nothing');

  const write = await genApi(['--root', root]);
  t.equal(write.code, 0, write.stderr);
  t.equal((await genApi(['--check', '--root', root])).code, 0, 'current after a run');

  const crd = join(root, 'helm/weft/crds/weft.dev_accesspolicies.yaml');
  await writeFile(crd, (await readFile(crd, 'utf8')).replace('maxItems: 32', 'maxItems: 33'));
  const stale = await genApi(['--check', '--root', root]);
  t.equal(stale.code, 1, 'a hand edit is caught');
  t.match(stale.stderr, /weft\.dev_accesspolicies\.yaml/);
  t.notMatch(stale.stderr, /meshtlspolicies|types\.gen/, 'and only that file is named');
});

function* nodes(s: Schema, path: string): Generator<[string, Schema]> {
  yield [path, s];
  for (const [k, p] of Object.entries(s.properties ?? {})) yield* nodes(p, `${path}.${k}`);
  if (s.items) yield* nodes(s.items, `${path}[]`);
  if (s.additionalProperties) yield* nodes(s.additionalProperties, `${path}{}`);
}

t.test('every CEL rule carries its TypeScript twin, and the YAML carries no twin', async (t) => {
  let rules = 0;
  for (const crd of CRDS) {
    const schema = crd.spec.versions[0]?.schema.openAPIV3Schema;
    if (!schema) return t.fail('no schema');
    for (const [path, node] of nodes(schema, crd.spec.names.kind)) {
      for (const r of node['x-kubernetes-validations'] ?? []) {
        rules++;
        t.type(r[TWIN], 'function', `${path}: ${r.rule}`);
      }
      // Everything a CEL rule may read needs a bound, or the API server's cost estimate refuses it.
      if (!path.includes('.spec')) continue;
      if (node.type === 'array') t.ok(node.maxItems !== undefined, `${path}: maxItems`);
      if (node.type === 'string' && !node.enum && !node.format) t.ok(node.maxLength !== undefined, `${path}: maxLength`);
    }
  }
  t.ok(rules >= 15, `${rules} rules`);
  const yaml = [...generate().values()].join('\n');
  t.notMatch(yaml, /Symbol|function|=>/, 'symbols and functions stay out of the YAML');
});

t.test('the YAML writer quotes whatever YAML would read as something else', async (t) => {
  const doc = {
    plain: 'A sentence, with commas (and parentheses).',
    words: ['yes', 'No', 'on', 'null', 'true'],
    numbers: ['123', '1e3', '0x1f', '-1', '.5'],
    tricky: ['', ' leading', 'trailing ', 'a: b', 'a #b', '- x', '* star', '"q"', "'q'", '{x}', '[x]', 'x\ny', '@at', '`tick`', '%p', '!tag', '&anchor', '|bar', '>gt', '?q'],
    empty: { list: [], map: {} },
    nested: [{ a: 1, b: [true, false] }, 'x'],
  };
  const yaml = toYaml(doc);
  t.match(yaml, /^plain: A sentence, with commas \(and parentheses\)\.$/m, 'a plain sentence stays plain');
  for (const s of [...doc.words, ...doc.numbers, ...doc.tricky]) t.match(yaml, `- ${JSON.stringify(s)}\n`, `${JSON.stringify(s)} is quoted`);
  t.match(yaml, /^ {2}list: \[\]\n {2}map: \{\}$/m);
  t.match(yaml, /^nested:\n {2}- a: 1\n {4}b:\n {6}- true\n {6}- false\n {2}- x$/m, 'a map in a list starts on the dash line');
});
