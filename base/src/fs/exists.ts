import { lstat } from 'node:fs/promises';

/**
 * Whether anything (a file, a folder, a symlink, dangling or not) is at `path`. Only "not there"
 * answers false; any other failure (EACCES, EIO) is thrown, so a path that cannot be examined is
 * never taken for a free one.
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw e;
  }
}
