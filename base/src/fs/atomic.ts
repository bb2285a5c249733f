import { open, rename, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { faultPoint, type WriteFaultPoint } from '../fault/fault-point.js';

/**
 * The one way Sonde writes a file that matters (DESIGN.md, "Conventions"): write a temp file in
 * the same directory, fsync it, rename it over the target, then fsync the directory so the
 * rename itself survives a power cut. A reader sees the old bytes or the new bytes, never a mix.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', options.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    if (options.mode !== undefined) await fh.chmod(options.mode);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  writeFault('write:before-rename', basename(path));
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dir);
  writeFault('write:after-rename', basename(path));
}

const writeFault: (point: WriteFaultPoint, file: string) => void = faultPoint;

/** fsync a directory so that entries created or renamed in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/**
 * Moves a fully written temp file into place durably: fsync its bytes, rename(2) it over the
 * target, fsync the directory. For large outputs that were streamed to `tmp` first.
 */
export async function commitFile(tmp: string, path: string): Promise<void> {
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}
