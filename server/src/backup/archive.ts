import { copyFile, link, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { create, extract } from 'tar';
import { fsyncDir } from '../../../base/src/fs/atomic.js';
import { ServerError } from '../errors.js';

/**
 * The one-file archives of backup and export: a plain tar (packs are compressed and encrypted
 * already). Written to a temp name and renamed into place, mode 0600 (a backup holds the CA key
 * and the token hashes). Extraction takes only the entries a caller allows, as regular files or
 * directories; node-tar's own checks keep every path inside the destination.
 */
export async function writeArchive(staging: string, file: string, entries: readonly string[]): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await create({ file: tmp, cwd: staging, portable: true, mode: 0o600 } as Parameters<typeof create>[0] & { file: string }, [...entries]);
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export async function extractArchive(file: string, dest: string, allow: (path: string) => boolean): Promise<string[]> {
  try {
    await stat(file);
  } catch (e) {
    throw new ServerError('ARCHIVE_INVALID', `${file} cannot be read`, { cause: e });
  }
  await mkdir(dest, { recursive: true, mode: 0o700 });
  const refused: string[] = [];
  const taken: string[] = [];
  try {
    await extract({
      file,
      cwd: dest,
      strict: true,
      filter: (path, entry) => {
        const type = 'type' in entry ? entry.type : entry.isDirectory() ? 'Directory' : 'File';
        const clean = path.replace(/^\.\//, '').replace(/\/$/, '');
        const ok = (type === 'File' || type === 'OldFile' || type === 'Directory') && (type === 'Directory' || allow(clean));
        if (!ok) refused.push(clean);
        else if (type !== 'Directory') taken.push(clean);
        return ok;
      },
    });
  } catch (e) {
    throw new ServerError('ARCHIVE_INVALID', `${file} is not a readable archive: ${(e as Error).message}`, { cause: e });
  }
  if (refused.length > 0) throw new ServerError('ARCHIVE_INVALID', `${file} holds entries that do not belong in it: ${refused.slice(0, 3).join(', ')}`);
  return taken;
}

/** A pack file into a staging folder: a hard link (same file system), else a copy. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true, mode: 0o700 });
  try {
    await link(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    await copyFile(from, to);
  }
}

/** Copies the regular files of a folder (the keyring) into another. */
export async function copyFolder(from: string, to: string): Promise<string[]> {
  await mkdir(to, { recursive: true, mode: 0o700 });
  const names: string[] = [];
  for (const name of await readdir(from).catch(() => [] as string[])) {
    if (!(await stat(join(from, name))).isFile()) continue;
    await copyFile(join(from, name), join(to, name));
    names.push(name);
  }
  return names;
}
