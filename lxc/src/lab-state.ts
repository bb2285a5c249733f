import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../base/src/fs/atomic.js';
import { tryPidLock } from '../../base/src/os/pid-lock.js';
import { LabError } from './errors.js';
import type { LabNet } from './network.js';
import type { ProbeInit } from '../../images/src/lab/probe-image.js';

/**
 * Where a lab keeps itself. Everything a lab makes lives under `<home>/labs/<name>/` (its state,
 * its lxcpath, its probes' layers, its own fleet server's data), so `down --all` removes one
 * folder, and two labs never share a file. Images shared by labs live under `<home>/images/`.
 */
export const LAB_LINES = Object.freeze({ 'old-stable': '1.0.0', stable: '1.1.0', beta: '1.1.1' } as const);
export type LabLine = keyof typeof LAB_LINES;

export function isLabLine(x: string): x is LabLine {
  return Object.hasOwn(LAB_LINES, x);
}

export const DEFAULT_LAB = 'lab';
const LAB_NAME = /^[a-z][a-z0-9]{0,11}$/;

export function labHome(): string {
  return resolve(process.env['SONDE_LAB_HOME'] ?? '/var/lib/sonde-lab');
}

export function checkLabName(name: string): string {
  if (!LAB_NAME.test(name)) throw new LabError('LAB_NAME_INVALID', `lab name ${JSON.stringify(name)}: 1 to 12 lowercase letters and digits, starting with a letter`);
  return name;
}

/** The labs that have a folder in the lab home, by name. */
export async function labNames(home = labHome()): Promise<string[]> {
  const names = await readdir(join(home, 'labs')).catch(() => [] as string[]);
  return names.filter((n) => LAB_NAME.test(n)).sort();
}

export interface LabPaths {
  readonly home: string;
  readonly images: string;
  readonly dir: string;
  readonly state: string;
  readonly lock: string;
  readonly lxc: string;
  readonly probes: string;
  readonly serverData: string;
  readonly serverLog: string;
  readonly serverOut: string;
  readonly tokenFile: string;
}

export function labPaths(name: string, home = labHome()): LabPaths {
  const dir = join(home, 'labs', checkLabName(name));
  return {
    home,
    images: join(home, 'images'),
    dir,
    state: join(dir, 'lab.json'),
    lock: join(dir, 'lock'),
    lxc: join(dir, 'lxc'),
    probes: join(dir, 'probes'),
    serverData: join(dir, 'server'),
    serverLog: join(dir, 'server.log'),
    serverOut: join(dir, 'server.out'),
    tokenFile: join(dir, 'server.token'),
  };
}

export interface LabProbe {
  readonly name: string;
  readonly index: number;
  readonly ip: string;
  readonly veth: string;
  /** A built-in line (LabLine) or the vendor's own, from a lab file. */
  readonly line: string;
  readonly version: string;
  readonly createdAt: string;
  /** PID 1 of the probe; absent in labs made before systemd probes: busybox. */
  readonly init?: ProbeInit;
  /** A QEMU probe booting through U-Boot (absent: GRUB, or not a QEMU probe). */
  readonly bootloader?: 'uboot';
}

export interface LabServerRef {
  /** True when the lab started the server and stops it on `down --all`. */
  readonly own: boolean;
  /** The URL staff tools use (loopback for the lab's own server). */
  readonly url: string;
  /** The URL probes use (on the lab bridge), when the lab knows it. */
  readonly probeUrl?: string;
  readonly pid?: number;
  readonly port?: number;
}

export interface LabState {
  readonly format: 'sonde-lab-1';
  readonly name: string;
  readonly backend: 'lxc' | 'podman' | 'qemu';
  readonly net: LabNet;
  server: LabServerRef | null;
  probes: LabProbe[];
  /** The folders of `<home>/images` this lab's server and probes were made from (`lab prune` keeps them); absent in labs made before. */
  images?: string[];
}

export async function readLabState(p: LabPaths): Promise<LabState | null> {
  let text: string;
  try {
    text = await readFile(p.state, 'utf8');
  } catch {
    return null;
  }
  const s = JSON.parse(text) as LabState;
  if (s.format !== 'sonde-lab-1') throw new LabError('LAB_BUSY', `${p.state} is not a lab state file`);
  return s;
}

export async function writeLabState(p: LabPaths, s: LabState): Promise<void> {
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(p.state, `${JSON.stringify(s, null, 2)}\n`);
}


/**
 * A lock file holding the owner's pid, taken with O_EXCL; a lock whose owner died is taken over.
 * Waits up to `waitMs` for a live owner, then fails with LAB_BUSY.
 */
export async function withLock<T>(lockPath: string, what: string, fn: () => Promise<T>, waitMs = 120_000): Promise<T> {
  const deadline = Date.now() + waitMs;
  let lock = tryPidLock(lockPath);
  while (!lock.taken) {
    if (Date.now() > deadline) throw new LabError('LAB_BUSY', `${what} is busy: process ${lock.holder} holds ${lockPath}`);
    await new Promise((r) => setTimeout(r, 100));
    lock = tryPidLock(lockPath);
  }
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
