import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

/**
 * Fault injection (DESIGN.md, "Fault injection"): `SONDE_CRASH_AT=<point>` makes the agent die
 * abruptly, as from a power cut, when it reaches that named point. SIGKILL, not exit(): no
 * finally block, no flush, no cleanup runs. Every point the engine passes is listed here so the
 * crash-matrix test can loop over all of them.
 */
export const CRASH_POINTS = [
  'received:persisted',
  'verified:persisted',
  'stage:target-marked-bad',
  'stage:payloads-extracted',
  'stage:slot-written',
  'stage:app-stopped',
  'stage:db-snapshot',
  'stage:db-migrated',
  'stage:slot-synced',
  'stage:config-written',
  'staged:persisted',
  'switch:persisted',
  'switch:db-moved-aside',
  'switch:db-swapped',
  'switch:config-swapped',
  'switch:pointer-flipped',
  'trial:persisted',
  'trial:app-started',
  'trial:health-checked-once',
  'commit:persisted',
  'commit:slot-marked-good',
  'commit:receipt-written',
  'rollback:persisted',
  'rollback:app-stopped',
  'rollback:pointer-restored',
  'rollback:db-restored',
  'rollback:config-restored',
  'rollback:app-started',
  'write:before-rename',
  'write:after-rename',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/**
 * `point:<file pattern>`: a file name, or a pattern whose `*` stands for any run of characters,
 * so a file whose name is only known at run time (a receipt, `<deployment id>.json`) can be
 * targeted too: `write:before-rename:*-*.json`. A `#n` suffix picks the n-th match in this
 * process (`write:before-rename:status.json#2`: the second time status.json is written).
 */
function matchesOnce(spec: string, point: CrashPoint, detail: string | undefined): boolean {
  if (spec === point) return true;
  if (detail === undefined || !spec.startsWith(`${point}:`)) return false;
  const pattern = spec.slice(point.length + 1);
  if (!pattern.includes('*')) return pattern === detail;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(detail);
}

const hits = new Map<string, number>();

function matches(variable: string, at: string, point: CrashPoint, detail: string | undefined): boolean {
  const m = /^(.*)#(\d+)$/.exec(at);
  if (!m) return matchesOnce(at, point, detail);
  if (!matchesOnce(m[1]!, point, detail)) return false;
  const n = (hits.get(variable) ?? 0) + 1;
  hits.set(variable, n);
  return n === Number(m[2]);
}

let diskFilled = false;

/**
 * Fills the file system that holds `path` until it reports ENOSPC: a disk that runs full after
 * the free-space check passed. The filler is left in place; removing it is the test's job.
 */
function fillDisk(path: string): void {
  const fd = openSync(path, 'a', 0o600);
  try {
    for (const size of [1 << 20, 1 << 16, 1 << 12, 1 << 9, 1]) {
      const block = Buffer.alloc(size);
      for (;;) {
        try {
          writeSync(fd, block);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Dies at `point`. A point that writes a named file also matches `point:<file name>`, so
 * `write:before-rename:config.json` stops just before config.json is renamed into place.
 *
 * `SONDE_FILL_DISK_AT=<point>` (with `SONDE_FILL_DISK_PATH=<filler file>`) instead fills the
 * disk there, once, and lets the agent carry on into the full disk.
 */
export function crashPoint(point: CrashPoint, detail?: string): void {
  const fillAt = process.env.SONDE_FILL_DISK_AT;
  if (fillAt !== undefined && !diskFilled && matches('SONDE_FILL_DISK_AT', fillAt, point, detail)) {
    const filler = process.env.SONDE_FILL_DISK_PATH;
    if (!filler) throw new Error('SONDE_FILL_DISK_AT needs SONDE_FILL_DISK_PATH, the filler file to write');
    diskFilled = true;
    fillDisk(filler);
  }
  const at = process.env.SONDE_CRASH_AT;
  if (at === undefined) return;
  if (matches('SONDE_CRASH_AT', at, point, detail)) powerCut();
}

/**
 * The whole agent dies. In the daemon's installer process (daemon/installer.ts) that is the
 * daemon first, then the installer: a power cut does not leave the daemon standing to clean up.
 */
function powerCut(): never {
  if (process.env.SONDE_INSTALLER_OF !== undefined && Number(process.env.SONDE_INSTALLER_OF) === process.ppid) {
    try {
      process.kill(process.ppid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL');
}
