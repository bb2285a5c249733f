import { isSondeError, type SondeError } from '../errors/sonde-error.js';
import { CliError } from './cli-error.js';

/** Set by `--json` handlers so that a failure is reported as JSON too. */
let jsonOutput = false;
export function useJsonOutput(on: boolean): void {
  jsonOutput = on;
}

/**
 * Runs a CLI action and turns a failure into one line on stderr and an exit code:
 * 1 for a refusal with a documented code, 2 for a usage error, 70 for a bug.
 */
export async function runCommand(action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (caught) {
    const e = isSondeError(caught) ? caught : (systemError(caught) ?? caught);
    if (isSondeError(e)) {
      if (jsonOutput) process.stdout.write(`${JSON.stringify({ ok: false, code: e.code, message: e.message })}\n`); // the envelope's failure (output.ts)
      process.stderr.write(`error ${e.code}: ${e.message}\n`);
      process.exitCode = e.code === 'USAGE' ? 2 : 1;
      return;
    }
    process.stderr.write(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 70;
  }
}

const FILE_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EEXIST: 'it exists already',
  EMFILE: 'too many open files',
};

/**
 * An operating-system error that reached the top (a taken port, a missing output folder, a full
 * disk) is the user's situation, not a bug: one line with a documented code, never a stack trace.
 */
function systemError(e: unknown): SondeError<string> | null {
  const x = e as NodeJS.ErrnoException & { address?: string; port?: number; dest?: string };
  if (!(e instanceof Error) || typeof x.code !== 'string') return null;
  if (x.code === 'EADDRINUSE') {
    const where = x.address !== undefined ? `${x.address}${x.port !== undefined ? `:${x.port}` : ''}` : 'the address';
    return new CliError('PORT_IN_USE', `${where} is in use by another process: choose another port`, { cause: e });
  }
  const what = FILE_ERRORS[x.code];
  if (what === undefined) return null;
  const path = x.path ?? x.dest;
  return new CliError('FILE_ACCESS_FAILED', `${x.syscall ?? 'access'} ${path ?? ''}: ${what} (${x.code})`.replace(/ +:/, ':'), { cause: e });
}
