import { close, closeSync, constants as FS, fdatasync, linkSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { readlink, realpath } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PackError } from './errors.js';
import type { InnerHeader, InnerSink } from './payload-tar.js';
import { assertNever } from '../../base/src/errors/sonde-error.js';

/**
 * Writes the entries of a payload tar under `root`, refusing anything that could reach outside it
 * (node-tar's list of attacks, each with a test in test/security/): absolute paths, `..`, writing
 * through a symlink, symlinks or hardlinks that point outside, duplicate entries, and more entries
 * or bytes than the signed manifest declared. `root` must be a fresh, empty directory; every path
 * created under it is recorded, so the extractor knows what each ancestor is without trusting the
 * disk.
 */
type Kind = 'dir' | 'implicit-dir' | 'file' | 'symlink';

const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;
/**
 * Files larger than this are flushed early when the caller asks (flushLargeFiles). Every file is
 * written synchronously, chunk by chunk as it is decrypted: on this 2-core machine a trip through
 * libuv's thread pool per write cost more CPU than the copy into the page cache it saves the main
 * thread (256 MiB in 64 KiB writes: 0.08-0.11 s with writeSync, 0.18-0.22 s asynchronously), and
 * a decrypted chunk written at once can be collected at once instead of waiting in a queue.
 */
const LARGE_FILE_BYTES = 256 * 1024;

export interface ExtractLimits {
  readonly fileCount: number;
  /**
   * Start flushing each large file to disk as soon as it is written (fdatasync in the thread
   * pool, overlapping the next files' decryption), for callers that sync the tree before using
   * it: the final syncfs then finds little left to write.
   */
  readonly flushLargeFiles?: boolean;
}

/** Splits and checks a tar path; returns its components relative to the root. */
export function safeComponents(path: string, what = 'entry'): string[] {
  if (path.includes('\0')) throw new PackError('UNSAFE_PATH', `${what} path contains a NUL byte`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw new PackError('UNSAFE_PATH', `${what} path is too long`);
  if (path.startsWith('/')) throw new PackError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} is an absolute path`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  for (const p of parts) {
    if (p === '..') throw new PackError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} climbs out with '..'`);
    if (Buffer.byteLength(p) > MAX_NAME_BYTES) throw new PackError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} has a name that is too long`);
  }
  return parts;
}

export class SafeExtractor implements InnerSink {
  private readonly kinds = new Map<string, Kind>();
  private current: { fd: number; large: boolean; position: number } | null = null;
  entries = 0;
  bytesWritten = 0;
  private readonly symlinks: string[] = [];
  private readonly flushing: Promise<void>[] = [];

  constructor(
    private readonly root: string,
    private readonly limits: ExtractLimits,
  ) {}

  /** Paths created under the root: every entry's, and every parent directory the tar only implied. */
  get created(): number {
    return this.kinds.size;
  }

  async entry(h: InnerHeader): Promise<void> {
    this.entries += 1;
    if (this.entries > this.limits.fileCount) {
      throw new PackError('FILE_COUNT_MISMATCH', `the payload holds more than the ${this.limits.fileCount} entries its manifest declares`);
    }
    const parts = safeComponents(h.path);
    if (parts.length === 0) {
      if (h.type === 'directory') return; // "./" itself
      throw new PackError('UNSAFE_PATH', `${h.type} entry with an empty path`);
    }
    const rel = parts.join('/');
    const existing = this.kinds.get(rel);
    if (existing !== undefined && !(existing === 'implicit-dir' && h.type === 'directory')) {
      throw new PackError('DUPLICATE_ENTRY', `${JSON.stringify(rel)} appears twice in the payload`);
    }
    await this.ensureParents(parts);
    const target = join(this.root, ...parts);
    switch (h.type) {
      case 'directory':
        if (existing === undefined) mkdirSync(target, { mode: 0o755 });
        this.kinds.set(rel, 'dir');
        return;
      case 'file': {
        // O_EXCL + O_NOFOLLOW: never reuse or follow anything already on disk.
        const fd = openSync(target, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, h.mode & 0o777);
        this.kinds.set(rel, 'file');
        this.current = { fd, large: h.size > LARGE_FILE_BYTES, position: 0 };
        return;
      }
      case 'symlink': {
        if (h.linkpath === '' || h.linkpath.startsWith('/')) {
          throw new PackError('UNSAFE_PATH', `symlink ${JSON.stringify(rel)} points to an absolute path ${JSON.stringify(h.linkpath)}`);
        }
        const resolved = posix.normalize(posix.join(posix.dirname(rel), h.linkpath));
        if (resolved === '..' || resolved.startsWith('../')) {
          throw new PackError('UNSAFE_PATH', `symlink ${JSON.stringify(rel)} points outside the payload (${JSON.stringify(h.linkpath)})`);
        }
        symlinkSync(h.linkpath, target);
        this.kinds.set(rel, 'symlink');
        this.symlinks.push(rel);
        return;
      }
      case 'hardlink': {
        const linkParts = safeComponents(h.linkpath, 'hardlink target');
        const linkRel = linkParts.join('/');
        if (this.kinds.get(linkRel) !== 'file') {
          throw new PackError('UNSAFE_PATH', `hardlink ${JSON.stringify(rel)} must point to a regular file extracted earlier, not ${JSON.stringify(h.linkpath)}`);
        }
        linkSync(join(this.root, ...linkParts), target);
        this.kinds.set(rel, 'file');
        return;
      }
      default:
        return assertNever(h.type, 'tar entry');
    }
  }

  data(chunk: Buffer): void {
    const cur = this.current;
    if (!cur) throw new PackError('PAYLOAD_TAR_INVALID', 'data outside a file entry');
    for (let at = 0; at < chunk.length; ) at += writeSync(cur.fd, chunk, at, chunk.length - at, cur.position + at);
    cur.position += chunk.length;
    this.bytesWritten += chunk.length;
  }

  entryEnd(): void {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    if (cur.large && this.limits.flushLargeFiles) {
      const fd = cur.fd;
      this.flushing.push(
        new Promise<void>((resolve) => {
          fdatasync(fd, () => close(fd, () => resolve()));
        }),
      );
    } else {
      closeSync(cur.fd);
    }
  }

  /** Called once the tar has ended: closes what is open and re-checks symlinks on the real disk. */
  async finish(): Promise<void> {
    this.entryEnd();
    await Promise.all(this.flushing);
    const rootReal = await realpath(this.root);
    const inside = (p: string): boolean => p === rootReal || p.startsWith(rootReal + '/');
    // Each link is followed one component at a time, as the kernel would, and every step must stay
    // inside: `b -> a/..` with `a -> .` looks inside but climbs out, and so does a dangling
    // `b -> a/../nowhere`, or `a/../app/x`, which comes back only while the folder is named app.
    for (const rel of this.symlinks) {
      const link = join(this.root, rel);
      let at = await realpath(posix.dirname(link));
      const parts = (await readlink(link)).split('/').filter((p) => p !== '' && p !== '.');
      for (const [i, part] of parts.entries()) {
        const next = await realpath(`${at}/${part}`).catch(() => null);
        if (next === null) {
          // Nothing on disk from here on (or a loop): the rest must be plain names, which cannot climb.
          if (parts.slice(i).includes('..')) {
            throw new PackError('UNSAFE_PATH', `symlink ${JSON.stringify(rel)} climbs with '..' through a path that does not exist`);
          }
          break;
        }
        if (!inside(next)) {
          throw new PackError('UNSAFE_PATH', `symlink ${JSON.stringify(rel)} resolves outside the payload through another link`);
        }
        at = next;
      }
    }
  }

  /** Closes an open file after a failure; the caller removes the whole root. */
  async abort(): Promise<void> {
    const cur = this.current;
    this.current = null;
    await Promise.allSettled(this.flushing);
    if (cur) {
      try {
        closeSync(cur.fd);
      } catch {
        // already closed
      }
    }
  }

  private async ensureParents(parts: string[]): Promise<void> {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      const kind = this.kinds.get(rel);
      if (kind === 'dir' || kind === 'implicit-dir') continue;
      if (kind === 'symlink') throw new PackError('UNSAFE_PATH', `${JSON.stringify(parts.join('/'))} would be written through the symlink ${JSON.stringify(rel)}`);
      if (kind === 'file') throw new PackError('UNSAFE_PATH', `${JSON.stringify(parts.join('/'))} would be written under the file ${JSON.stringify(rel)}`);
      mkdirSync(join(this.root, ...parts.slice(0, i)), { mode: 0o755 });
      this.kinds.set(rel, 'implicit-dir');
    }
  }
}
