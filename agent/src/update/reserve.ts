import { open, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layout } from './layout.js';

/**
 * A ballast file, `<state>/reserve`: space the agent holds back for its own bookkeeping. The
 * free-disk check runs before staging, but the disk can still run full during an install (a log,
 * another writer). Then even the journal cannot record the failure, and the deployment would be
 * left unfinished. The engine deletes the reserve when a write fails for lack of space, which
 * gives the journal, the receipt and the undo room to end the deployment cleanly; the next
 * install writes it again once there is room.
 */
export const RESERVE_BYTES = 2 * 1024 * 1024;

function reservePath(layout: Layout): string {
  return join(layout.state, 'reserve');
}

/** Writes the reserve when it is missing; best effort (a disk too full for it keeps none). */
export async function keepReserve(layout: Layout): Promise<void> {
  const path = reservePath(layout);
  if ((await stat(path).catch(() => null))?.size === RESERVE_BYTES) return;
  try {
    const fh = await open(path, 'w', 0o600);
    try {
      // Real zeros, not a sparse file: the blocks must be allocated to be worth anything.
      await fh.writeFile(Buffer.alloc(RESERVE_BYTES));
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    await rm(path, { force: true });
  }
}

/** Frees the reserve; true when there was one. */
export async function releaseReserve(layout: Layout): Promise<boolean> {
  const path = reservePath(layout);
  const had = (await stat(path).catch(() => null)) !== null;
  await rm(path, { force: true });
  return had;
}

const LOW_BYTES = 1024 * 1024;

/**
 * ENOSPC from the file system or SQLITE_FULL from the journal, anywhere in the cause chain. SQLite
 * reports a full disk met while it grows a shared-memory file as a plain I/O error, so an I/O
 * error counts too when the probe's disk is (nearly) full.
 */
export async function isDiskFull(e: unknown, layout: Layout): Promise<boolean> {
  const codes: unknown[] = [];
  for (let c: unknown = e, depth = 0; c && typeof c === 'object' && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    codes.push((c as { code?: unknown }).code);
  }
  if (codes.some((c) => c === 'ENOSPC' || c === 'EDQUOT' || c === 'SQLITE_FULL')) return true;
  if (!codes.some((c) => c === 'EIO' || (typeof c === 'string' && c.startsWith('SQLITE_IOERR')))) return false;
  for (const dir of [layout.state, layout.root]) {
    const fs = await statfs(dir).catch(() => null);
    if (fs && fs.bavail * fs.bsize < LOW_BYTES) return true;
  }
  return false;
}
