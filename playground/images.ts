// Container images without a registry: a root filesystem assembled from files this machine has
// (what the project builds, the pinned Node, Debian's packages), written as one layer in the
// `docker save` format that `ctr images import` reads. The tarball is cached by a hash of what
// went in, so an unchanged image is not rebuilt.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { run } from './exec.ts';

export interface ImageSpec {
  /** name:tag, as pods name it (with imagePullPolicy IfNotPresent or Never). */
  ref: string;
  /** Host file → path in the image; the mode is kept. */
  files: { src: string; dest: string }[];
  symlinks?: { path: string; target: string }[];
  /** Empty directories the image needs (mount points, /tmp). */
  dirs?: string[];
  /** Extra files with literal content (/etc/passwd, ...). */
  texts?: { path: string; content: string; mode?: number }[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  user?: string;
  workdir?: string;
}

export function imageCacheDir(): string {
  return join(process.env.WEFT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'weft'), 'images');
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

async function fileHash(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** What decides the image's bytes: the spec and the identity (size, mtime) of every input file. */
async function inputKey(spec: ImageSpec): Promise<string> {
  const files = await Promise.all(
    spec.files.map(async (f) => {
      const s = await stat(f.src);
      return `${f.src}:${f.dest}:${s.size}:${s.mtimeMs}:${s.mode}`;
    }),
  );
  return sha256(JSON.stringify({ spec, files, format: 1 })).slice(0, 16);
}

/** Builds (or finds in the cache) the image's tarball and returns its path. */
export async function buildImage(spec: ImageSpec): Promise<string> {
  const dir = imageCacheDir();
  const out = join(dir, `${spec.ref.replace(/[^a-zA-Z0-9.-]/g, '_')}-${await inputKey(spec)}.tar`);
  if (existsSync(out)) return out;
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'weft-image-'));
  try {
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs);
    for (const d of spec.dirs ?? []) await mkdir(join(rootfs, d), { recursive: true });
    for (const f of spec.files) {
      const to = join(rootfs, f.dest);
      await mkdir(dirname(to), { recursive: true });
      await copyFile(f.src, to);
      await chmod(to, (await stat(f.src)).mode & 0o7777);
    }
    for (const t of spec.texts ?? []) {
      const to = join(rootfs, t.path);
      await mkdir(dirname(to), { recursive: true });
      await writeFile(to, t.content, { mode: t.mode ?? 0o644 });
    }
    for (const l of spec.symlinks ?? []) {
      const at = join(rootfs, l.path);
      await mkdir(dirname(at), { recursive: true });
      await symlink(l.target, at);
    }
    // One layer, byte-for-byte the same for the same inputs: sorted, root-owned, mtime 0.
    const layer = join(work, 'layer.tar');
    await run('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-cf', layer, '-C', rootfs, '.'], { timeoutMs: 300_000 });
    const diffId = `sha256:${await fileHash(layer)}`;
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: {
        Env: spec.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
      },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'weft playground/images.ts' }],
    };
    const configJson = JSON.stringify(config);
    const archive = join(work, 'archive');
    await mkdir(join(archive, diffId.slice(7)), { recursive: true });
    await rename(layer, join(archive, diffId.slice(7), 'layer.tar'));
    const configName = `${sha256(configJson)}.json`;
    await writeFile(join(archive, configName), configJson);
    await writeFile(join(archive, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [spec.ref], Layers: [`${diffId.slice(7)}/layer.tar`] }]));
    // A temporary name of this process's own: two playgrounds started together build the same
    // image at once, and with one shared name the second rename found the file already moved.
    const tmp = `${out}.${process.pid}.tmp`;
    await run('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', tmp, '-C', archive, '.'], { timeoutMs: 300_000 });
    await rename(tmp, out);
    // Earlier builds of the same image are rarely used again (the agent's is ~250 MB); but one an
    // hour old may be what a playground starting beside this one (from another state of the
    // checkout) is about to import, so only older ones go.
    const prefix = basename(out).replace(/-[0-9a-f]{16}\.tar$/, '-');
    for (const f of await readdir(dir)) {
      if (!f.startsWith(prefix) || !/^[0-9a-f]{16}\.tar$/.test(f.slice(prefix.length)) || join(dir, f) === out) continue;
      const st = await stat(join(dir, f)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 3600_000) await rm(join(dir, f), { force: true });
    }
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The shared libraries a dynamically linked program loads (ldd's answer), so that an image can
 * carry a Debian program without a Debian base image.
 */
export async function sharedLibraries(programs: string | string[]): Promise<string[]> {
  // ldd takes many files at once and answers for each, but fails as a whole if one is no dynamic ELF.
  const list = typeof programs === 'string' ? [programs] : programs;
  const out = await run('sh', ['-c', 'ldd "$@" 2>/dev/null; exit 0', 'ldd', ...list]).catch(() => '');
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  return [...libs];
}

/** Minimal /etc files most programs expect. */
export function etcFiles(): { path: string; content: string }[] {
  return [
    { path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n' },
    { path: 'etc/group', content: 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' },
    { path: 'etc/nsswitch.conf', content: 'passwd: files\ngroup: files\nhosts: files dns\n' },
  ];
}

/** The playground's sandbox image: the static pause built with the other components. */
export function pauseImage(binDir: string, ref: string): ImageSpec {
  return { ref, files: [{ src: join(binDir, 'pause'), dest: 'pause' }], entrypoint: ['/pause'] };
}

/**
 * The test workloads' image (demo, tests, the chart's `helm test`). Not tagged `latest`, whose
 * default pull policy is Always.
 */
export const BUSYBOX_IMAGE = 'weft.local/busybox:local';

/**
 * A small image for test workloads: Debian's busybox-static, every applet linked, and the host's
 * curl (Debian's busybox 1.35 wget crashes with -T, which scripts use for a timeout).
 */
export async function busyboxImage(ref = BUSYBOX_IMAGE): Promise<ImageSpec> {
  const busybox = '/bin/busybox';
  if (!existsSync(busybox)) throw new Error('busybox is missing: run "bash scripts/install-system-deps.sh" (installs busybox-static)');
  const applets = (await run(busybox, ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
  const curl = '/usr/bin/curl';
  const curlFiles = existsSync(curl) ? [{ src: curl, dest: 'usr/bin/curl' }, ...(await sharedLibraries(curl)).map((l) => ({ src: l, dest: l.slice(1) }))] : [];
  return {
    ref,
    files: [{ src: busybox, dest: 'bin/busybox' }, ...curlFiles],
    symlinks: applets.map((a) => ({ path: `bin/${a}`, target: 'busybox' })),
    dirs: ['tmp', 'proc', 'sys', 'dev', 'root', 'var/www'],
    texts: [...etcFiles(), { path: 'var/www/index.html', content: 'weft playground\n' }],
    cmd: ['sh'],
  };
}

export async function readImageRef(tarball: string): Promise<string> {
  const manifest = await run('tar', ['-xOf', tarball, './manifest.json']);
  return (JSON.parse(manifest) as { RepoTags: string[] }[])[0]?.RepoTags[0] ?? '';
}

/** The regular files and symbolic links an installed Debian package put on this machine, docs and man pages left out. */
export async function debianPackageFiles(pkg: string): Promise<{ files: string[]; symlinks: { path: string; target: string }[] }> {
  const out = await run('dpkg', ['-L', pkg]).catch(() => {
    throw new Error(`the Debian package ${pkg} is not installed: run "bash scripts/install-system-deps.sh"`);
  });
  const files: string[] = [];
  const symlinks: { path: string; target: string }[] = [];
  for (const f of out.split('\n')) {
    if (!f.startsWith('/') || f.startsWith('/usr/share/doc') || f.startsWith('/usr/share/man')) continue;
    const st = await lstat(f).catch(() => undefined);
    if (st?.isFile()) files.push(f);
    else if (st?.isSymbolicLink()) symlinks.push({ path: f.slice(1), target: await readlink(f) });
  }
  return { files, symlinks };
}

/**
 * The end-to-end suites' workload image, so that one pod spec runs on simulated and real nodes:
 * busybox for the shell and `sleep`, Debian's python3 (`python3 -m http.server`), curl, socat and
 * iperf3, and fortio from the pinned components. Suites that run the checkout's own helpers
 * (tests/helpers/*.ts) mount the checkout read-only at its own path and run its pinned Node, so the
 * image carries Node's libraries but not the checkout: a test edit needs no image rebuild.
 */
export const TEST_IMAGE = 'weft.local/testbox:local';
export const TEST_IMAGE_PACKAGES = ['python3', 'python3-minimal', 'python3.11', 'python3.11-minimal', 'libpython3.11-minimal', 'libpython3.11-stdlib', 'curl', 'socat', 'iperf3', 'libiperf0'];

export async function testImage(binDir: string, node: string, ref = TEST_IMAGE): Promise<ImageSpec> {
  const spec = await busyboxImage(ref);
  const files = new Map(spec.files.map((f) => [f.dest, f.src]));
  const links = new Map((spec.symlinks ?? []).map((l) => [l.path, l.target]));
  const elves: string[] = [node];
  for (const pkg of TEST_IMAGE_PACKAGES) {
    const got = await debianPackageFiles(pkg);
    for (const f of got.files) {
      files.set(f.slice(1), f);
      if (/\/s?bin\/|\.so(\.|$)/.test(f)) elves.push(f);
    }
    for (const l of got.symlinks) links.set(l.path, l.target);
  }
  const fortio = join(binDir, 'fortio');
  if (!existsSync(fortio)) throw new Error(`${fortio} is missing: the playground components are not built (npm run build:playground)`);
  files.set('usr/bin/fortio', fortio);
  // One ldd for every program and extension module (python's _ssl, _hashlib, ... load libssl).
  for (const lib of await sharedLibraries(elves)) files.set(lib.slice(1), lib);
  if (existsSync('/lib64/ld-linux-x86-64.so.2')) files.set('lib64/ld-linux-x86-64.so.2', '/lib64/ld-linux-x86-64.so.2');
  // A Debian link whose path is also a file of the image loses, and so do the host's merged-/usr
  // directory links (/lib, /lib64) that dpkg lists: the image has real directories there.
  const dirs = new Set([...files.keys(), ...links.keys()].flatMap((f) => f.split('/').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('/'))));
  for (const p of links.keys()) if (files.has(p) || dirs.has(p)) links.delete(p);
  return {
    ...spec,
    files: [...files].map(([dest, src]) => ({ src, dest })).sort((a, b) => a.dest.localeCompare(b.dest)),
    symlinks: [...links].map(([path, target]) => ({ path, target })).sort((a, b) => a.path.localeCompare(b.path)),
  };
}
