import { spawn } from 'node:child_process';
import { lstat, rm } from 'node:fs/promises';

/**
 * Runs a command under GNU time and returns its wall time and peak RSS. Benchmarks print what
 * these return next to their targets; nothing here asserts.
 */
export interface Run {
  seconds: number;
  maxRssKiB: number;
  /** CPU seconds the command used, in user space and in the kernel. */
  userSeconds: number;
  sysSeconds: number;
  stdout: string;
}

export async function timed(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '__RSS__ %M %U %S', cmd, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
        return;
      }
      const rss = /__RSS__ (\d+) ([\d.]+) ([\d.]+)/.exec(stderr);
      resolve({ seconds, maxRssKiB: rss ? Number(rss[1]) : NaN, userSeconds: rss ? Number(rss[2]) : NaN, sysSeconds: rss ? Number(rss[3]) : NaN, stdout });
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** "min-max" of a set of seconds, for printing beside a median. */
export function spread(xs: number[]): string {
  return `${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)} s`;
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

/**
 * This machine's root file system is ext4 without a journal. There, for 30 s after an inode is
 * freed (35 s while its inode table block is dirty), the kernel will not hand it out again and
 * scans past it on every create (fs/ext4/ialloc.c, recently_deleted(); `perf record` of 2,000
 * creates put a third of the time in it). Measured: 2,000 small-file creates take 0.5-0.9 s of
 * system time within 30 s of an rm -rf of a 2,000-file tree, 0.02-0.04 s otherwise. So benchmarks
 * delete through remove(), extract each run into a fresh folder, and settle() before a timed step
 * waits until that window has passed since the last deletion: no step pays for an earlier one's
 * cleanup. (Deletions by another process just before a benchmark still count; start from a
 * quiet machine.)
 */
const RECENTLY_DELETED_MS = 36_000;
let lastDeletion = 0;

/** Removes what exists of `paths`, and remembers when if anything was there. */
export async function remove(...paths: string[]): Promise<void> {
  for (const p of paths) {
    const existed = await lstat(p).then(() => true, () => false);
    await rm(p, { recursive: true, force: true });
    if (existed) lastDeletion = Date.now();
  }
}

/**
 * This machine is a virtual one whose host backs guest memory lazily: a page the guest has not
 * used lately costs a fault in the host on first touch. Measured (2026-11-23, a C loop touching
 * fresh anonymous memory 256 MiB at a time, one write per 4 KiB page): about 100 ms per 256 MiB
 * for the first gigabyte or so, then 650-730 ms per 256 MiB; run again at once, 100 ms per 256 MiB
 * for the first 2.5 GiB (the pages the first run had just freed). A page freed and left for a few
 * seconds goes cold again. Every page cache page an extraction fills is such a page: `tar -x` of
 * the 256 MiB benchmark payload into /dev/shm took 0.20-0.23 s three times in a row, then 0.54, 0.82
 * and 0.83 s as the trees kept from the earlier runs pushed it into cold memory; after an rm -rf,
 * 0.19-0.21 s again. A probe on real hardware has no such cost, and it hits each step by however
 * much cold memory that step happens to reach, so it skews the ratios from run to run.
 *
 * warmMemory() touches WARM_BYTES in a short-lived child and lets it exit: its pages go back to
 * the free lists warm, and the timed step that starts right after reuses them.
 */
const WARM_BYTES = 768 * 1024 * 1024;

export async function warmMemory(): Promise<void> {
  await timed(process.execPath, ['-e', `Buffer.allocUnsafe(${WARM_BYTES}).fill(1)`]);
}

/**
 * Syncs, waits out the recently-deleted window since the last remove() (and at least 2 s), then
 * warms the memory the next step will use.
 */
export async function settle(): Promise<void> {
  await timed('sync', []);
  const wait = Math.max(2000, lastDeletion + RECENTLY_DELETED_MS - Date.now());
  await new Promise((r) => setTimeout(r, wait));
  await warmMemory();
}
