import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bytes, parseDuration, printJson, table } from '../../../base/src/cli/output.js';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { AGENT_LOG, AGENT_STATE } from '../../../images/src/lab/probe-image.js';
import { ftpPut } from '../ftp.js';
import { runInteractive } from '../host.js';
import { BACKENDS, isBackendKind } from '../backends.js';
import { Lab } from '../lab.js';
import { isLabLine, LAB_LINES, labHome, labNames, type LabLine } from '../lab-state.js';
import { loadProfile } from '../lab-config.js';

interface LabFlags {
  lab: string;
}

function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new CliError('USAGE', `${flag} takes a positive whole number, not ${text}`);
  return n;
}

export async function upAction(
  flags: LabFlags & { count?: string; line?: string; server?: string; token?: string; timeout: string; quiet?: boolean; backend?: string; init?: string; config?: string; profile?: string; vm?: boolean; bootloader?: string },
): Promise<void> {
  if (flags.vm) {
    if (flags.backend !== undefined && flags.backend !== 'qemu') throw new CliError('USAGE', '--vm is --backend qemu');
    flags = { ...flags, backend: 'qemu' };
  }
  if ((flags.config === undefined) !== (flags.profile === undefined)) throw new CliError('USAGE', '--config and --profile go together');
  if (flags.config !== undefined && flags.line !== undefined) throw new CliError('USAGE', '--line comes from the profile with --config');
  if (flags.init !== undefined && flags.init !== 'busybox' && flags.init !== 'systemd') throw new CliError('USAGE', '--init must be busybox or systemd');
  if (flags.bootloader !== undefined && flags.bootloader !== 'grub' && flags.bootloader !== 'uboot') throw new CliError('USAGE', '--bootloader must be grub or uboot');
  // A profile of the vendor's lab file, read and checked before anything is made.
  const profile = flags.config !== undefined ? await loadProfile(flags.config, flags.profile!) : null;
  const lineName = flags.line ?? 'stable';
  if (!profile && !isLabLine(lineName)) throw new CliError('USAGE', `--line must be one of ${Object.keys(LAB_LINES).join(', ')}`);
  const line = profile ? profile.line : (lineName as LabLine);
  const init = (flags.init as 'busybox' | 'systemd' | undefined) ?? profile?.init ?? 'busybox';
  const count = flags.count !== undefined ? positive(flags.count, '--count') : (profile?.count ?? 1);
  const url = flags.server ?? process.env['SONDE_SERVER'];
  const token = flags.token ?? process.env['SONDE_TOKEN'];
  if (url && !token) throw new CliError('USAGE', 'joining a fleet server needs its admin token: --token or SONDE_TOKEN');
  if (flags.backend !== undefined && !isBackendKind(flags.backend)) throw new CliError('USAGE', `--backend must be one of ${BACKENDS.join(', ')}`);
  const lab = await Lab.open(flags.lab, flags.backend ? { backend: flags.backend } : {});
  const t0 = Date.now();
  const log = flags.quiet ? undefined : (l: string): void => void process.stderr.write(`lab ${flags.lab}: ${l}\n`);
  const made = await lab.up({
    count,
    line,
    init,
    ...(flags.bootloader !== undefined ? { bootloader: flags.bootloader as 'grub' | 'uboot' } : {}),
    ...(url && token ? { server: { url, token } } : {}),
    timeoutMs: positive(flags.timeout, '--timeout') * 1000,
    ...(log ? { log } : {}),
  });
  log?.(`${made.length} probe(s) healthy on ${made[0]?.version ?? ''} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.stdout.write(`${made.map((p) => p.name).join('\n')}\n`);
}

export async function lsAction(flags: LabFlags & { json?: boolean }): Promise<void> {
  const lab = await Lab.open(flags.lab);
  const { state, probes } = await lab.list();
  if (flags.json) {
    printJson({
      lab: flags.lab,
      exists: state !== null,
      bridge: state?.net.bridge ?? null,
      hostIp: state?.net.hostIp ?? null,
      server: state?.server ?? null,
      probes: probes.map((p) => ({
        name: p.name,
        ip: p.ip,
        line: p.line,
        container: p.container,
        online: p.server?.online ?? false,
        version: p.server?.version ?? null,
        health: p.server?.health ?? null,
        lastDeployment: p.server?.lastDeployment ?? null,
      })),
    });
    return;
  }
  if (!state) {
    // Most often the user meant another lab: name the ones there are.
    const others = (await labNames()).filter((n) => n !== flags.lab);
    const hint = others.length > 0 ? `; labs here: ${others.join(', ')} (sonde lab ls --lab NAME)` : ` (sonde lab up --lab ${flags.lab})`;
    process.stdout.write(`no lab ${flags.lab}${hint}\n`);
    return;
  }
  process.stdout.write(`lab ${flags.lab}: bridge ${state.net.bridge} ${state.net.hostIp}/24, server ${state.server?.url ?? 'none'}${state.server?.own ? ' (the lab\'s own)' : ''}\n`);
  const rows = probes.map((p) => [
    p.name,
    p.ip,
    p.container,
    p.server ? (p.server.online ? 'online' : 'offline') : '-',
    p.server?.version ?? '-',
    p.server?.health ?? '-',
    p.server?.lastDeployment ? `${p.server.lastDeployment.outcome}${p.server.lastDeployment.errorCode ? ` ${p.server.lastDeployment.errorCode}` : ''}` : '-',
  ]);
  process.stdout.write(`${table(['NAME', 'ADDRESS', 'CONTAINER', 'LINK', 'VERSION', 'HEALTH', 'LAST DEPLOYMENT'], rows)}\n`);
}

export async function downAction(name: string | undefined, flags: LabFlags & { all?: boolean }): Promise<void> {
  if (!flags.all && !name) throw new CliError('USAGE', 'name a probe, or give --all');
  if (flags.all && name) throw new CliError('USAGE', 'give a probe name or --all, not both');
  const lab = await Lab.open(flags.lab);
  const gone = await lab.down(flags.all ? { all: true } : { name: name! });
  process.stdout.write(flags.all ? `lab ${flags.lab} removed (${gone.length} probe(s))\n` : `removed ${gone.join(', ')}\n`);
}

export async function pruneAction(flags: { keep: string; dryRun?: boolean; json?: boolean }): Promise<void> {
  let keepMs: number;
  try {
    keepMs = parseDuration(flags.keep);
  } catch (e) {
    throw new CliError('USAGE', `--keep: ${(e as Error).message}`);
  }
  const { pruneImages } = await import('../lab-prune.js');
  const entries = await pruneImages(labHome(), { keepMs, dryRun: flags.dryRun === true });
  const freedBytes = entries.filter((e) => e.action !== 'kept').reduce((n, e) => n + e.bytes, 0);
  if (flags.json) return printJson({ images: entries, freedBytes, dryRun: flags.dryRun === true });
  if (entries.length) process.stdout.write(`${table(['IMAGE', 'SIZE', 'ACTION', 'WHY'], entries.map((e) => [e.name, bytes(e.bytes), e.action, e.why]))}\n`);
  process.stdout.write(`${flags.dryRun ? 'would free' : 'freed'} ${bytes(freedBytes)} in ${join(labHome(), 'images')}\n`);
}

export async function shellAction(name: string, flags: LabFlags): Promise<void> {
  const lab = await Lab.open(flags.lab);
  await lab.requireProbe(name);
  const [cmd, ...args] = lab.backend.shellCommand(name);
  process.exitCode = await runInteractive(cmd!, args);
}

export async function logsAction(name: string, flags: LabFlags & { source: string; lines?: string }): Promise<void> {
  const lab = await Lab.open(flags.lab);
  const probe = await lab.requireProbe(name);
  let text: string;
  // A QEMU probe has one log the host can read: its serial console (GRUB, kernel, rcS, the agent).
  if (lab.backend.kind === 'qemu' && flags.source !== 'agent') throw new CliError('USAGE', `${name} is a QEMU probe: its log is its console (--source agent)`);
  switch (lab.backend.kind === 'qemu' ? 'console' : flags.source) {
    case 'console':
      text = await lab.agentLog(name);
      break;
    case 'agent':
      text = await readFile(join(lab.upperOf(name), AGENT_LOG.slice(1)), 'utf8').catch(() => '');
      break;
    case 'ftp':
      text = await readFile(join(lab.upperOf(name), 'var/log/vsftpd.log'), 'utf8').catch(() => '');
      break;
    case 'boot':
      text = await readFile(join(lab.upperOf(name), 'var/log/boot.log'), 'utf8').catch(() => '');
      break;
    case 'app': {
      // Under systemd the app's units log to the journal; otherwise the app logs to /run (a
      // tmpfs): either way only a running probe has it.
      const units = probe.init === 'systemd' ? await runnerUnits(join(lab.upperOf(name), AGENT_STATE.slice(1), 'runner.json')) : [];
      const r = units.length > 0 ? await lab.exec(name, ['journalctl', '--no-pager', '-o', 'short-iso', ...units.flatMap((u) => ['-u', u])]) : await lab.exec(name, ['/bin/cat', '/run/app.log']);
      text = r.code === 0 ? r.stdout : '';
      break;
    }
    default:
      throw new CliError('USAGE', '--source must be agent, app, ftp or boot');
  }
  if (flags.lines) {
    const n = positive(flags.lines, '--lines');
    text = `${text.split('\n').filter(Boolean).slice(-n).join('\n')}\n`;
  }
  process.stdout.write(text);
}

export async function ftpPutAction(name: string, pack: string, flags: LabFlags): Promise<void> {
  const lab = await Lab.open(flags.lab);
  const p = await lab.requireProbe(name);
  const tty = process.stderr.isTTY;
  const path = await ftpPut(p.ip, pack, tty ? (sent, total) => void process.stderr.write(`\r${name}: ${Math.floor((100 * sent) / Math.max(total, 1))}% of ${total} bytes`) : undefined);
  if (tty) process.stderr.write('\n');
  process.stdout.write(`uploaded to ftp://${p.ip}/${path}; the probe installs it (sonde lab logs ${name}, sonde lab ls)\n`);
}

/** The systemd units the probe's agent runs the app as (its runner.json), or none. */
async function runnerUnits(path: string): Promise<string[]> {
  try {
    const s = JSON.parse(await readFile(path, 'utf8')) as { systemd?: { units?: unknown } };
    return Array.isArray(s.systemd?.units) ? s.systemd.units.filter((u): u is string => typeof u === 'string') : [];
  } catch {
    return [];
  }
}
