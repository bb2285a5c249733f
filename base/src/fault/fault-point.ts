import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

/**
 * Fault injection (DESIGN.md, "Fault injection"), the mechanism every layer shares: the install
 * engine names its state boundaries (agent/src/update/crash.ts), atomic writes name their two
 * steps (WRITE_FAULT_POINTS), and the server may name its own. `SONDE_CRASH_AT=<point>` makes the
 * process die abruptly, as from a power cut, when it reaches that named point: SIGKILL, not
 * exit(), so no finally block, no flush and no cleanup runs.
 */

/** The points of base/src/fs/atomic.ts, passed by every file that matters. */
export const WRITE_FAULT_POINTS = ['write:before-rename', 'write:after-rename'] as const;
export type WriteFaultPoint = (typeof WRITE_FAULT_POINTS)[number];

/**
 * `point:<file pattern>`: a file name, or a pattern whose `*` stands for any run of characters,
 * so a file whose name is only known at run time (a receipt, `<deployment id>.json`) can be
 * targeted too: `write:before-rename:*-*.json`. A `#n` suffix picks the n-th match in this
 * process (`write:before-rename:status.json#2`: the second time status.json is written).
 */
function matchesOnce(spec: string, point: string, detail: string | undefined): boolean {
  if (spec === point) return true;
  if (detail === undefined || !spec.startsWith(`${point}:`)) return false;
  const pattern = spec.slice(point.length + 1);
  if (!pattern.includes('*')) return pattern === detail;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(detail);
}

const hits = new Map<string, number>();

function matches(variable: string, at: string, point: string, detail: string | undefined): boolean {
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
 * disk there, once, and lets the process carry on into the full disk.
 *
 * Callers pass their own closed list of point names (a typed wrapper), so that a test can loop
 * over every point a layer has.
 */
export function faultPoint(point: string, detail?: string): void {
  const role = processRole();
  const fillAt = process.env.SONDE_FILL_DISK_AT;
  if (fillAt !== undefined && !diskFilled && matches('SONDE_FILL_DISK_AT', fillAt, point, detail)) {
    const filler = process.env.SONDE_FILL_DISK_PATH;
    if (!filler) throw new Error('SONDE_FILL_DISK_AT needs SONDE_FILL_DISK_PATH, the filler file to write');
    diskFilled = true;
    fillDisk(filler);
  }
  const trace = process.env.SONDE_FAULT_TRACE;
  if (trace !== undefined) announce(trace, `sonde-point: ${process.pid} ${role} ${point}${detail !== undefined ? `:${detail}` : ''}`);
  const at = process.env.SONDE_CRASH_AT;
  if (at === undefined) return;
  // SONDE_CRASH_ROLE: only that process counts and dies (`#n` counts within a process, and the
  // agent and the installer it forks pass some of the same points).
  const onlyIn = process.env.SONDE_CRASH_ROLE;
  if (onlyIn !== undefined && onlyIn !== role) return;
  if (matches('SONDE_CRASH_AT', at, point, detail)) powerCut(`${point}${detail !== undefined ? `:${detail}` : ''}`);
}

/**
 * Which of the agent's processes this is: `installer`, the child a daemon forks for one install
 * (agent/src/daemon/installer.ts; SONDE_INSTALLER_OF names its parent), or `agent` (the daemon, a
 * CLI command).
 */
export function processRole(): 'installer' | 'agent' {
  const of = process.env.SONDE_INSTALLER_OF;
  return of !== undefined && Number(of) === process.ppid ? 'installer' : 'agent';
}

/** One line to a console or log file, written at once (the machine may be cut right after). */
function announce(path: string, line: string): void {
  try {
    const fd = openSync(path, 'a');
    try {
      writeSync(fd, `${line}\n`);
    } finally {
      closeSync(fd);
    }
  } catch {
    // a trace is best effort; the point itself must not fail
  }
}

/**
 * The whole agent dies. In the daemon's installer process (agent/src/daemon/installer.ts) that
 * is the daemon first, then the installer: a power cut does not leave the daemon standing to
 * clean up. `SONDE_INSTALLER_OF` names the parent that must die with it.
 */
function powerCut(where: string): never {
  // SONDE_CRASH_CONSOLE: a whole machine is cut from outside (a QEMU probe: the power-cut harness
  // kills QEMU when it reads this line). The agent says where and stops dead, so nothing it would
  // have done after the point reaches the disk; its SIGSTOP is its last act.
  const console = process.env.SONDE_CRASH_CONSOLE;
  if (console !== undefined) {
    announce(console, `sonde-cut-here: ${where}`);
    if (process.env.SONDE_INSTALLER_OF !== undefined && Number(process.env.SONDE_INSTALLER_OF) === process.ppid) process.kill(process.ppid, 'SIGSTOP');
    for (;;) process.kill(process.pid, 'SIGSTOP');
  }
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
