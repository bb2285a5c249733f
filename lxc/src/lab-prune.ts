import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { processAlive } from '../../base/src/os/process-alive.js';
import { tryPidLock, type PidLock } from '../../base/src/os/pid-lock.js';
import { LabError } from './errors.js';
import { labNames, labPaths, readLabState, type LabState } from './lab-state.js';

/**
 * `sonde lab prune` (docs/lab.md). The images folder of the lab home keeps what `lab up` builds
 * once per agent build and line (sample packs, the agent package, the LXC probes' golden layers,
 * the QEMU probe disk and its packs: about 0.7 GB a build with QEMU probes), and nothing else
 * ever removes a build's images. Prune removes an image folder when
 *   - no lab records using it (each lab's lab.json lists the folders its server and probes were
 *     made from: an LXC probe runs the agent package's tree mounted from there, and the lab's
 *     server trusts the sample packs' root, whose key signs what its next probes install),
 *   - and nothing used it for `keepMs` (buildOnce stamps a folder each time it hands it out, so a
 *     bench or test running from this home keeps what it just took),
 * and a half-built folder (`<name>.tmp-<pid>-<ms>`) whose builder is gone.
 *
 * Each lab's lock is held while prune decides and removes, so no `lab up` of an existing lab
 * takes an image in between. A lab that is busy (its lock held), or whose lab.json predates the
 * record, keeps every image. A folder is renamed out of its name before it is removed: a build
 * that looks it up afterwards rebuilds it instead of finding half of it.
 */
export interface PruneOptions {
  /** Folders used more recently than this are kept. */
  readonly keepMs: number;
  /** Decide and report, remove nothing. */
  readonly dryRun?: boolean;
  readonly now?: number;
}

export interface PruneEntry {
  readonly name: string;
  readonly bytes: number;
  readonly action: 'removed' | 'would remove' | 'kept';
  readonly why: string;
}

const TMP_NAME = /\.tmp-(\d+)-\d+$/;
const PRUNING_NAME = /\.pruning-\d+$/;

/** Records in the lab's state the image folders (top-level under `imagesDir`) its probes were made from. */
export function recordImages(state: LabState, imagesDir: string, paths: readonly string[]): void {
  const names = new Set(state.images ?? []);
  for (const p of paths) {
    const rel = relative(imagesDir, p);
    if (rel !== '' && !rel.startsWith('..')) names.add(rel.split(sep)[0]!);
  }
  state.images = [...names].sort();
}

async function sizeOf(path: string): Promise<number> {
  const st = await lstat(path).catch(() => null);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let total = st.blocks * 512;
  for (const e of await readdir(path).catch(() => [] as string[])) total += await sizeOf(join(path, e));
  return total;
}

interface LabHold {
  readonly locks: PidLock[];
  /** Folder names some lab uses; null: a lab keeps every folder (busy, or no record). */
  readonly used: Set<string> | null;
  readonly keepAllWhy: string | null;
}

async function holdLabs(home: string): Promise<LabHold> {
  const locks: PidLock[] = [];
  const used = new Set<string>();
  for (const name of await labNames(home)) {
    const paths = labPaths(name, home);
    const lock = tryPidLock(paths.lock);
    if (!lock.taken) return { locks, used: null, keepAllWhy: `lab ${name} is busy (process ${lock.holder} holds its lock)` };
    locks.push(lock);
    const state = await readLabState(paths).catch(() => null);
    if (!state || (state.probes.length === 0 && !state.server)) continue; // nothing of it was made from an image
    if (!state.images) return { locks, used: null, keepAllWhy: `lab ${name} was made before labs recorded their images` };
    for (const i of state.images) used.add(i);
  }
  return { locks, used, keepAllWhy: null };
}

export async function pruneImages(home: string, o: PruneOptions): Promise<PruneEntry[]> {
  const images = join(home, 'images');
  const now = o.now ?? Date.now();
  await mkdir(home, { recursive: true, mode: 0o700 });
  const own = tryPidLock(join(home, 'prune.lock'));
  if (!own.taken) throw new LabError('LAB_BUSY', `another prune runs (process ${own.holder})`);
  let hold: LabHold = { locks: [], used: null, keepAllWhy: null };
  try {
    hold = await holdLabs(home);
    const out: PruneEntry[] = [];
    const names = (await readdir(images).catch(() => [] as string[])).sort();
    for (const name of names) {
      const path = join(images, name);
      const st = await lstat(path).catch(() => null);
      if (!st?.isDirectory()) continue;
      const bytes = await sizeOf(path);
      const builder = TMP_NAME.exec(name)?.[1];
      const leftover = PRUNING_NAME.test(name);
      const minutes = Math.max(0, Math.round((now - st.mtimeMs) / 60_000));
      let kept: string | null = null;
      let gone: string;
      if (builder !== undefined) {
        if (processAlive(Number(builder))) kept = `being built by process ${builder}`;
        gone = 'half-built, its builder is gone';
      } else if (leftover) {
        gone = 'left by a stopped prune';
      } else {
        if (hold.used === null) kept = hold.keepAllWhy;
        else if (hold.used.has(name)) kept = 'a lab uses it';
        else if (now - st.mtimeMs < o.keepMs) kept = `used ${minutes} min ago`;
        gone = `no lab uses it, last used ${minutes} min ago`;
      }
      if (kept !== null) {
        out.push({ name, bytes, action: 'kept', why: kept });
        continue;
      }
      if (o.dryRun) {
        out.push({ name, bytes, action: 'would remove', why: gone });
        continue;
      }
      const doomed = leftover ? path : `${path}.pruning-${process.pid}`;
      if (!leftover) await rename(path, doomed);
      await rm(doomed, { recursive: true, force: true });
      out.push({ name, bytes, action: 'removed', why: gone });
    }
    return out;
  } finally {
    for (const l of hold.locks) if (l.taken) l.release();
    own.release();
  }
}
