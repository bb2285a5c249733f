import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { bytes, parseDuration, printJson } from '../../../base/src/cli/output.js';
import { ServerError } from '../errors.js';
import { TERMINAL_STATUSES, type CommandStatus } from '../store/types.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';

/**
 * `sonde probe ID diagnose [--wait] [-o FILE] [--timeout 2m]`: asks the probe for a diagnostics
 * bundle (POST /api/v1/probes/ID/diagnose). Without --wait or -o it exits once the request is
 * queued (an offline probe answers when it next connects). With them, it waits for the bundle and
 * writes it to FILE (default diagnostics-ID-COMMAND.tar.gz), checked against its sha256.
 */
export interface DiagnoseFlags extends ApiFlags {
  wait?: boolean;
  output?: string;
  timeout?: string;
  json?: boolean;
}

interface CommandView {
  commandId: string;
  status: CommandStatus;
  errorCode: string | null;
}

export async function diagnoseAction(id: string, flags: DiagnoseFlags): Promise<void> {
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(flags.timeout ?? '2m');
  } catch (e) {
    throw new CliError('USAGE', (e as Error).message);
  }
  const client = new ApiClient(await resolveTarget(flags));
  const { body: c } = await client.json<CommandView>('POST', `/api/v1/probes/${encodeURIComponent(id)}/diagnose`, {});
  if (!flags.wait && flags.output === undefined) {
    if (flags.json) return printJson(c);
    process.stdout.write(`diagnostics requested from ${id}: command ${c.commandId} (${c.status}); \`sonde probe ${id} diagnose --wait\` waits for the bundle\n`);
    return;
  }
  const until = Date.now() + timeoutMs;
  let last = c;
  while (!TERMINAL_STATUSES.has(last.status)) {
    if (Date.now() > until) {
      throw new ServerError('DIAGNOSTICS_UNAVAILABLE', `no bundle from ${id} within ${flags.timeout ?? '2m'} (command ${c.commandId} is ${last.status}; an offline probe answers when it next connects)`);
    }
    await new Promise((r) => setTimeout(r, 250));
    last = (await client.json<CommandView>('GET', `/api/v1/commands/${c.commandId}`)).body;
  }
  if (last.status !== 'succeeded') throw new ServerError('DIAGNOSTICS_UNAVAILABLE', `the probe did not send a bundle: command ${c.commandId} ${last.status}${last.errorCode ? ` (${last.errorCode})` : ''}`);
  const { body, headers } = await client.bytes(`/api/v1/diagnostics/${c.commandId}`);
  const sha = createHash('sha256').update(body).digest('hex');
  if (headers['x-sonde-sha256'] !== undefined && headers['x-sonde-sha256'] !== sha) throw new ServerError('SERVER_RESPONSE_INVALID', `the bundle downloaded does not match its sha256 (${sha})`);
  const out = flags.output ?? `diagnostics-${id}-${c.commandId}.tar.gz`;
  try {
    await writeFile(out, body);
  } catch (e) {
    throw new CliError('INPUT_UNREADABLE', `cannot write ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (flags.json) return printJson({ commandId: c.commandId, file: out, size: body.length, sha256: sha });
  process.stdout.write(`wrote ${out} (${bytes(body.length)}, sha256 ${sha.slice(0, 16)}…)\n`);
}
