// Replacing files that other processes read at any moment (a runtime reading the CNI config, a
// runtime executing the plugin): write a temporary file in the same directory, fsync it, rename
// it over the target, fsync the directory. Readers see the old file or the new one, never half;
// and a binary being executed is never written in place (which would fail with ETXTBSY).
import { randomBytes } from 'node:crypto';
import { copyFile, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Temporary names start with a dot and end in no CNI extension, so no runtime loads them. */
function tempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.weft-tmp-${randomBytes(6).toString('hex')}`);
}

export async function writeFileAtomic(target: string, data: string | Uint8Array, mode: number): Promise<void> {
  await replaceWith(target, mode, async (tmp) => {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
  });
}

export async function copyFileAtomic(source: string, target: string, mode: number): Promise<void> {
  await replaceWith(target, mode, (tmp) => copyFile(source, tmp));
}

async function replaceWith(target: string, mode: number, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = tempPath(target);
  try {
    await fill(tmp);
    const fh = await open(tmp, 'r+');
    try {
      await fh.chmod(mode); // not left to the umask
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dirname(target));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
