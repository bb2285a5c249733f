import { CliError } from '../../../base/src/cli/cli-error.js';
import { printJson, table } from '../../../base/src/cli/output.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';

/**
 * `sonde cancel --command CID… | --probe ID`: cancels install and rollback commands
 * (POST /api/v1/commands/CID/cancel). A command the probe has not acknowledged ends `cancelled` at
 * once; one it accepted is cancelled on the probe, which drops it if it is still queued or stops
 * its download, and says so (`COMMAND_CANCELLED`); an install already under way runs to its
 * outcome. `--probe` cancels every unfinished install and rollback of that probe.
 */
export interface CancelFlags extends ApiFlags {
  command?: string[];
  probe?: string;
  json?: boolean;
}

interface CommandView {
  commandId: string;
  probeId: string;
  type: string;
  status: string;
}

const UNFINISHED = new Set(['pending', 'sent', 'accepted', 'running']);

export async function cancelAction(flags: CancelFlags): Promise<void> {
  const ids = flags.command ?? [];
  if ((ids.length > 0) === (flags.probe !== undefined)) throw new CliError('USAGE', 'name what to cancel with exactly one of --command CID (repeatable) or --probe ID');
  const client = new ApiClient(await resolveTarget(flags));
  let targets = ids;
  if (flags.probe !== undefined) {
    const detail = await client.json<{ commands: CommandView[] }>('GET', `/api/v1/probes/${encodeURIComponent(flags.probe)}`);
    targets = detail.body.commands.filter((c) => (c.type === 'install' || c.type === 'rollback') && UNFINISHED.has(c.status)).map((c) => c.commandId);
  }
  const done: CommandView[] = [];
  for (const id of targets) done.push((await client.json<CommandView>('POST', `/api/v1/commands/${encodeURIComponent(id)}/cancel`, {})).body);
  if (flags.json) return printJson({ commands: done });
  if (done.length === 0) {
    process.stdout.write(`nothing to cancel: probe ${flags.probe} has no unfinished install or rollback\n`);
    return;
  }
  const said = (c: CommandView): string =>
    c.status === 'cancelled' ? 'cancelled (the probe had not taken it)' : UNFINISHED.has(c.status) ? `cancel sent to the probe (it was ${c.status})` : `already ${c.status}: nothing to cancel`;
  process.stdout.write(`${table(['PROBE', 'COMMAND', 'TYPE', 'RESULT'], done.map((c) => [c.probeId, c.commandId, c.type, said(c)]))}\n`);
  if (done.some((c) => UNFINISHED.has(c.status))) {
    process.stdout.write('a probe stops a queued command or a download; an install already under way runs to its outcome. `sonde probe ID` shows each\n');
  }
}
