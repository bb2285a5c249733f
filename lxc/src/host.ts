import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { LabError, type LabCode } from './errors.js';

/**
 * Runs the host's tools (ip, lxc-*, podman) without a shell: arguments are never interpolated
 * into a command line, so a probe name cannot become a command.
 */
export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: { code?: LabCode; timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, ...(opts.env ? { env: opts.env } : {}) },
      (err, stdout, stderr) => {
        if (err) {
          const detail = (stderr || err.message).trim().split('\n').slice(-3).join(' / ');
          reject(new LabError(opts.code ?? 'LAB_PROBE_FAILED', `${cmd} ${args.join(' ')}: ${detail}`, { cause: err }));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run() but never throws: for clean-up, where "already gone" is fine. */
export async function tryRun(cmd: string, args: readonly string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** Runs a command with the terminal attached (lab shell); resolves with its exit code. */
export function runInteractive(cmd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const PATHS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The absolute path of a host tool, or null when it is not installed. */
export function which(tool: string): string | null {
  for (const dir of [...(process.env['PATH'] ?? '').split(':').filter(Boolean), ...PATHS]) {
    const p = `${dir}/${tool}`;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

