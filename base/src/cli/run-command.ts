import { isSondeError } from '../errors/sonde-error.js';

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
  } catch (e) {
    if (isSondeError(e)) {
      if (jsonOutput) process.stdout.write(`${JSON.stringify({ ok: false, code: e.code, message: e.message })}\n`);
      process.stderr.write(`error ${e.code}: ${e.message}\n`);
      process.exitCode = e.code === 'USAGE' ? 2 : 1;
      return;
    }
    process.stderr.write(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 70;
  }
}
