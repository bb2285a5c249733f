import { copyFile, rename, unlink } from 'node:fs/promises';
import { exists } from '../../../base/src/fs/exists.js';
import { randomBytes } from 'node:crypto';
import { basename, dirname, extname, join } from 'node:path';
import { commitFile, fsyncDir } from '../../../base/src/fs/atomic.js';
import { receiptPathFor } from './receipt.js';

/**
 * Moving a pack out of the inbox into processed/ or rejected/. Both live under the agent's state
 * folder, normally on the inbox's file system, so a move is one rename(2) and both folders are
 * fsynced. When the inbox was put on another file system (an FTP volume), the pack is copied,
 * synced and renamed into place, and only then removed from the inbox.
 */

/** `20261122T010804123Z`: sorts by time and is safe in a file name. */
export function fileStamp(at: Date): string {
  return at.toISOString().replace(/[-:.]/g, '');
}

/**
 * The name a pack takes in `dir`: its inbox name, or, when that (or its receipt) is taken
 * already, the name with a timestamp before the extension (`pack.<stamp>.spk`).
 */
export async function freeName(dir: string, name: string, at: Date): Promise<string> {
  const taken = async (n: string): Promise<boolean> => (await exists(join(dir, n))) || (await exists(receiptPathFor(dir, n)));
  if (!(await taken(name))) return name;
  const ext = extname(name);
  const stem = ext ? name.slice(0, -ext.length) : name;
  const stamped = `${stem}.${fileStamp(at)}`;
  for (let i = 0; ; i++) {
    const candidate = `${stamped}${i === 0 ? '' : `-${i}`}${ext}`;
    if (!(await taken(candidate))) return candidate;
  }
}

export async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    const tmp = join(dirname(to), `.${basename(to)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await copyFile(from, tmp);
      await commitFile(tmp, to);
    } catch (copyError) {
      await unlink(tmp).catch(() => undefined);
      throw copyError;
    }
    await unlink(from);
  }
  await fsyncDir(dirname(to));
  await fsyncDir(dirname(from));
}
