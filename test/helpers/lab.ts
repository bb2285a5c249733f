import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../../lxc/src/lab.js';
import type { LabServerClient } from '../../lxc/src/lab-server.js';
import { sampleKeyPaths, type SamplePaths } from '../../images/src/samples/index.js';

/**
 * The end-to-end suite runs real LXC probes (as root). Every file uses its own lab (own bridge,
 * containers, fleet server) in one lab home shared by the suite, so the sample packs and the
 * per-line probe layers are built once per machine. In CI a missing LXC fails instead of skipping.
 */
export const LAB_HOME = process.env['SONDE_LAB_TEST_HOME'] ?? join(tmpdir(), 'sonde-lab-tests');
export const SONDE_JS = join(process.cwd(), 'dist', 'cli', 'src', 'sonde.js');

const root = typeof process.getuid === 'function' && process.getuid() === 0;
export const LAB_SKIP = !process.env['CI'] && (!root || !existsSync('/usr/bin/lxc-start') || !existsSync('/usr/bin/busybox'));

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function sonde(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 240_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SONDE_JS, ...args], { env: { ...process.env, SONDE_LAB_HOME: LAB_HOME, SONDE_SERVER: '', SONDE_TOKEN: '', ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr });
    });
  });
}

export function openLab(name: string): Promise<Lab> {
  return Lab.open(name, { home: LAB_HOME });
}

export async function labClient(lab: Lab): Promise<LabServerClient> {
  const c = await lab.client();
  if (!c) throw new Error(`lab ${lab.name} has no server`);
  return c;
}

/** The lab home's sample packs and keys (built by the first `lab up`). */
export function labSamples(): SamplePaths & { dir: string } {
  const dir = join(LAB_HOME, 'images', 'samples-2');
  const pack = (f: string): string => join(dir, f);
  return {
    out: dir,
    dir,
    keys: sampleKeyPaths(join(dir, 'keys')),
    packs: {
      '1.0.0': pack('probe-app-1.0.0.spk'),
      '1.1.0': pack('probe-app-1.1.0.spk'),
      '1.1.1': pack('probe-app-1.1.1.spk'),
      '1.2.0-bad': pack('probe-app-1.2.0-bad.spk'),
      '1.2.0-crash': pack('probe-app-1.2.0-crash.spk'),
      license: pack('license.spk'),
      trust: pack('trust.spk'),
    },
    systemd: { '1.0.0': pack('probe-app-1.0.0-systemd.spk'), '1.1.0': pack('probe-app-1.1.0-systemd.spk') },
  };
}

export async function waitUntil<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The probe's own view (`sonde agent status --json` inside the container). */
export async function probeStatus(lab: Lab, name: string): Promise<{ version: string | null; slot: string | null; app: { running: boolean }; lastOutcome: { outcome: string; errorCode: string | null } | null }> {
  const r = await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'status', '--root', '/', '--state', '/var/lib/sonde', '--json']);
  if (r.code !== 0) throw new Error(`agent status on ${name} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Every regular file under `dir` (recursively), for secret scans. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

export async function fileHolds(path: string, needle: string): Promise<boolean> {
  const b = await readFile(path).catch(() => Buffer.alloc(0));
  return b.includes(Buffer.from(needle)) || b.includes(Buffer.from(needle, 'utf16le'));
}

/**
 * A fresh lab of `count` probes on `line`, through the real CLI (`sonde lab up`), with what the
 * tests hold on to: the lab, its server's client and the printed names.
 */
export async function bringUp(name: string, count: number, line: string): Promise<{ lab: Lab; client: LabServerClient; names: string[] }> {
  await sonde(['lab', 'down', '--all', '--lab', name]);
  const up = await sonde(['lab', 'up', '--count', String(count), '--line', line, '--lab', name]);
  if (up.code !== 0) throw new Error(`sonde lab up --lab ${name} exited ${up.code}: ${up.stderr}`);
  // A layer build that needed a second builder says why: keep it in the test output.
  for (const l of up.stderr.split('\n').filter((x) => x.includes('again with a fresh builder'))) console.warn(l);
  const lab = await openLab(name);
  return { lab, client: await labClient(lab), names: up.stdout.trim().split('\n') };
}
