import { CliError } from '../../../base/src/cli/cli-error.js';
import { printJson, table } from '../../../base/src/cli/output.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';

/**
 * `sonde rollback --probe ID… | --group G | --rollout RID`: queues a rollback command for each
 * probe named (POST /api/v1/rollbacks) or for every probe a rollout committed (POST
 * /api/v1/rollouts/RID/rollback, which aborts the rollout first if it is under way). Exits 0 once
 * the commands are queued; each probe runs its own rollback, with its own refusals, when it gets
 * the command (`sonde probe ID` shows the outcome).
 */
export interface RollbackFlags extends ApiFlags {
  probe?: string[];
  group?: string;
  rollout?: string;
  json?: boolean;
}

interface CommandLine {
  probeId: string;
  commandId: string;
  status?: string;
}

export async function rollbackAction(flags: RollbackFlags): Promise<void> {
  const probes = flags.probe ?? [];
  const chosen = [probes.length > 0, flags.group !== undefined, flags.rollout !== undefined].filter(Boolean).length;
  if (chosen !== 1) throw new CliError('USAGE', 'name what to roll back with exactly one of --probe ID (repeatable), --group G or --rollout RID');
  const client = new ApiClient(await resolveTarget(flags));
  let commands: CommandLine[];
  let body: Record<string, unknown>;
  let rolloutState: string | null = null;
  if (flags.rollout !== undefined) {
    const r = await client.json<{ rollout: { state: string }; commands: CommandLine[] }>('POST', `/api/v1/rollouts/${encodeURIComponent(flags.rollout)}/rollback`, {});
    body = { ...r.body };
    commands = r.body.commands;
    rolloutState = r.body.rollout.state;
  } else {
    const r = await client.json<{ commands: CommandLine[] }>('POST', '/api/v1/rollbacks', probes.length > 0 ? { probeIds: probes } : { group: flags.group });
    body = { ...r.body };
    commands = r.body.commands;
  }
  if (flags.json) return printJson(body);
  if (rolloutState !== null) process.stdout.write(`rollout ${flags.rollout} is ${rolloutState}\n`);
  if (commands.length === 0) {
    process.stdout.write('no probe to roll back: the rollout committed none\n');
    return;
  }
  process.stdout.write(`${table(['PROBE', 'COMMAND'], commands.map((c) => [c.probeId, c.commandId]))}\n`);
  process.stdout.write(`queued ${commands.length} rollback command(s); \`sonde probe ID\` shows each outcome\n`);
}
