import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { basename } from 'node:path';

/**
 * Which of these files does some process hold open for writing? (DESIGN.md, "Drops": a file
 * counts as complete only when its writer has finished.) The writer may be the FTP server, scp,
 * cp, or anything else, so the answer comes from the kernel: every /proc/<pid>/fd/<n> is a
 * symlink to the open file, and /proc/<pid>/fdinfo/<n> holds the open flags, which tell a
 * writer from a reader (a read-only open, such as our own hashing, does not count).
 *
 * Kept cheap: one readlink per open descriptor on the machine, and a stat plus an fdinfo read
 * only for descriptors whose link names one of the files. The name is matched first and the
 * inode decides, so a writer that sees the inbox through another path (a chroot, a bind mount)
 * is still found. Processes we may not inspect are skipped; without /proc (not Linux) the
 * answer is "none" and the size-stability rule alone applies.
 */
export interface WatchedFile {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/** O_ACCMODE: the low two bits of the flags are O_RDONLY (0), O_WRONLY (1) or O_RDWR (2). */
const ACCESS_MODE = 0o3;
const PIDS_AT_ONCE = 32;

export async function openForWriting(files: readonly WatchedFile[], procRoot = '/proc'): Promise<Set<string>> {
  const found = new Set<string>();
  if (files.length === 0) return found;
  const byName = new Map<string, WatchedFile[]>();
  for (const f of files) byName.set(basename(f.path), [...(byName.get(basename(f.path)) ?? []), f]);
  let pids: string[];
  try {
    pids = (await readdir(procRoot)).filter((n) => /^[0-9]+$/.test(n));
  } catch {
    return found;
  }
  for (let i = 0; i < pids.length; i += PIDS_AT_ONCE) {
    await Promise.all(pids.slice(i, i + PIDS_AT_ONCE).map((pid) => inspectProcess(`${procRoot}/${pid}`, byName, found)));
  }
  return found;
}

async function inspectProcess(proc: string, byName: ReadonlyMap<string, WatchedFile[]>, found: Set<string>): Promise<void> {
  let fds: string[];
  try {
    fds = await readdir(`${proc}/fd`);
  } catch {
    return; // gone, or not ours to inspect
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = await readlink(`${proc}/fd/${fd}`);
    } catch {
      continue;
    }
    // Sockets, pipes and anonymous inodes read "socket:[…]" and the like; files are absolute.
    if (!target.startsWith('/')) continue;
    const candidates = byName.get(basename(target.replace(/ \(deleted\)$/, '')));
    if (!candidates) continue;
    try {
      const info = await stat(`${proc}/fd/${fd}`);
      const file = candidates.find((c) => c.ino === info.ino && c.dev === info.dev);
      if (!file || found.has(file.path)) continue;
      if (await isWriteOpen(`${proc}/fdinfo/${fd}`)) found.add(file.path);
    } catch {
      // closed between the readlink and here: it no longer holds the file
    }
  }
}

async function isWriteOpen(fdinfo: string): Promise<boolean> {
  const m = /^flags:\s*([0-7]+)$/m.exec(await readFile(fdinfo, 'utf8'));
  // No flags line would be a kernel we do not know: assume a writer, the safe side.
  if (!m) return true;
  return (parseInt(m[1]!, 8) & ACCESS_MODE) !== 0;
}
