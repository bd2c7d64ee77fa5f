// The playground's local images of Weft come from images/*.Dockerfile and nothing else: every
// file the runtime stage copies is in the local image at the same path, with the same user and
// entrypoint, and an instruction the local builder cannot replay stops it instead of being skipped.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptPackages, buildWeftImage, planFromDockerfile, type Component } from './weft-images.ts';
import { imageCacheDir } from './images.ts';

const REPO = join(fileURLToPath(new URL('.', import.meta.url)), '..');

/** The runtime stage's lines, read without the builder's parser. */
async function runtimeLines(c: Component): Promise<string[]> {
  const text = (await readFile(join(REPO, 'images', `${c}.Dockerfile`), 'utf8')).replace(/\\\n/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const lastFrom = lines.map((l) => /^FROM /.test(l)).lastIndexOf(true);
  return lines.slice(lastFrom + 1);
}

for (const c of ['agent', 'controller'] as const) {
  t.test(`${c}: the local plan is the Dockerfile's runtime stage`, async (t) => {
    const plan = await planFromDockerfile(REPO, c, `test/${c}:x`);
    const lines = await runtimeLines(c);
    const copies = lines.flatMap((l) => {
      const m = /^COPY --from=build \/src\/(\S+) \/(\S+)$/.exec(l.trim());
      return m ? [{ src: join(REPO, m[1] ?? ''), dest: m[2] ?? '' }] : [];
    });
    t.ok(copies.length > 0, 'the Dockerfile copies files from its build stage');
    t.same(plan.copies, copies, 'every COPY --from=build, same source and destination');
    const json = (k: string) => {
      const l = lines.find((x) => x.startsWith(`${k} `));
      return l ? (JSON.parse(l.slice(k.length + 1)) as string[]) : undefined;
    };
    if (json('ENTRYPOINT')) t.same(plan.spec.entrypoint, json('ENTRYPOINT'), 'ENTRYPOINT');
    t.same(plan.spec.cmd, json('CMD'), 'CMD');
    t.equal(plan.spec.user, lines.find((l) => l.startsWith('USER '))?.slice(5).trim(), 'USER');
    const apt = lines.filter((l) => l.startsWith('RUN ')).flatMap((l) => aptPackages(l));
    t.same(plan.debianPackages, apt, 'the Debian packages the RUN line installs');
  });
}

t.test('an instruction the local builder cannot replay stops it', async (t) => {
  const repo = await mkdtemp(join(tmpdir(), 'weft-images-'));
  t.teardown(() => rm(repo, { recursive: true, force: true }));
  await cp(join(REPO, 'images'), join(repo, 'images'), { recursive: true });
  const df = join(repo, 'images', 'agent.Dockerfile');
  const original = await readFile(df, 'utf8');
  for (const [added, why] of [
    ['RUN curl -fsSL https://example.invalid/x -o /usr/local/bin/x', 'a RUN that is not an apt-get install'],
    ['HEALTHCHECK CMD ["true"]', 'an unknown instruction'],
    ['COPY images/ /etc/weft/', 'a COPY from the context, not from the build stage'],
  ] as const) {
    await writeFile(df, original.replace(/^USER 0:0$/m, `${added}\nUSER 0:0`));
    await t.rejects(planFromDockerfile(repo, 'agent', 'test/agent:x'), Error, why);
  }
});

t.test('the controller image built locally holds what the Dockerfile says, and nothing is pulled', { timeout: 120_000 }, async (t) => {
  const cache = await mkdtemp(join(tmpdir(), 'weft-images-cache-'));
  const saved = process.env.WEFT_CACHE;
  process.env.WEFT_CACHE = cache;
  t.teardown(async () => {
    if (saved === undefined) delete process.env.WEFT_CACHE;
    else process.env.WEFT_CACHE = saved;
    await rm(cache, { recursive: true, force: true });
  });
  const tarball = await buildWeftImage(REPO, 'controller', 'test/weft-controller:x');
  t.ok(tarball.startsWith(imageCacheDir()), 'built into the cache');
  const tarOut = (args: string[]) => execFileSync('tar', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const manifest = JSON.parse(tarOut(['-xOf', tarball, './manifest.json'])) as { Config: string; RepoTags: string[]; Layers: string[] }[];
  t.same(manifest[0]?.RepoTags, ['test/weft-controller:x']);
  const config = JSON.parse(tarOut(['-xOf', tarball, `./${manifest[0]?.Config}`])) as { config: { Entrypoint: string[]; Cmd: string[]; User: string } };
  t.same(config.config.Entrypoint, ['/nodejs/bin/node'], "distroless's entrypoint, from the pinned Node");
  t.same(config.config.Cmd, ['/app/controller.mjs']);
  t.equal(config.config.User, '65532:65532');
  const layer = execFileSync('sh', ['-c', `tar -xOf "$1" "./$2" | tar -t`, 'sh', tarball, manifest[0]?.Layers[0] ?? ''], { encoding: 'utf8', maxBuffer: 64 << 20 });
  t.match(layer, /^\.\/app\/controller\.mjs$/m, 'the bundle');
  t.match(layer, /^\.\/nodejs\/bin\/node$/m, 'Node');
});
