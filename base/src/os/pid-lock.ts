import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { processAlive } from './process-alive.js';

/**
 * A lock file that holds its owner's pid: the one way Sonde keeps two processes off the same
 * thing (an install on a probe, a server's data directory, a lab's networks). The file is
 * written whole under a temporary name and then hard-linked into place, so it appears with its
 * pid already in it: link(2) fails with EEXIST when the lock is held, and no reader ever sees an
 * empty lock file that it would mistake for a stale one.
 *
 * A lock whose owner is gone is taken over. A zombie counts as gone (process-alive.ts).
 */
export type PidLock = { readonly taken: true; release(): void } | { readonly taken: false; readonly holder: number };

export interface PidLockOptions {
  /**
   * Whether a lock that names this very process counts as stale. True for locks a process takes
   * once (a pid reused after a reboot, an agent restarted under the same pid); false where one
   * process may hold the lock for one task while another task of it waits.
   */
  readonly selfIsStale?: boolean;
}

/** Reads the pid in a lock file: null when the file is gone, 0 when it holds no pid. */
function holderOf(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
}

/**
 * Tries once (and once more after clearing a stale lock) to take the lock at `path`. Returns the
 * live holder's pid when it cannot. Errors other than "held" (a missing directory, EACCES) are
 * thrown as they are.
 */
export function tryPidLock(path: string, options: PidLockOptions = {}): PidLock {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600, flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(tmp, path);
        return { taken: true, release: () => removeLock(path) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = holderOf(path);
      if (holder === null) continue; // released meanwhile
      const self = holder === process.pid;
      const live = holder > 0 && (self ? options.selfIsStale !== true : processAlive(holder));
      if (live) return { taken: false, holder };
      removeLock(path);
    }
    const holder = holderOf(path);
    return { taken: false, holder: holder ?? 0 };
  } finally {
    removeLock(tmp);
  }
}

function removeLock(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}
