import { CliError } from '../../../base/src/cli/cli-error.js';
import { resolvePackRef } from './pack-ref.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';
import { jsonEnvelope, parseDuration, parseSize, printJson, shortTime, table } from '../../../base/src/cli/output.js';

/**
 * `sonde rollout create|status|start|pause|resume|abort|approve|retry` (docs/rollouts.md): thin
 * clients of `/api/v1/rollouts`. Flags are turned into the API's JSON body here; the server
 * validates it and answers refusals with their codes. `--json` prints what the API answered.
 */
export interface JsonFlag {
  json?: boolean;
}

export interface CreateFlags extends ApiFlags, JsonFlag {
  pack: string;
  name?: string;
  environment?: string;
  channel?: string;
  group?: string;
  tag?: string;
  probe?: string[];
  agentBelow?: string;
  agentFirst?: string;
  canary?: string;
  canaryProbe?: string[];
  waves?: string;
  success?: string;
  errorThreshold?: string;
  wait?: string;
  approval?: boolean;
  window?: string[];
  downloadCap?: string;
  downloadWindow?: string;
  keepCurrent?: boolean;
  draft?: boolean;
}

interface WaveView {
  wave: number;
  kind: string;
  size: number;
  pending: number;
  sent: number;
  accepted: number;
  installing: number;
  committed: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  started: boolean;
}

interface RolloutView {
  id: string;
  name: string | null;
  state: string;
  packSha256: string;
  product: string;
  version: string;
  environment: string | null;
  target: Record<string, unknown>;
  strategy: {
    canary?: { probes?: number; percent?: number; probeIds?: string[] };
    waves: number[];
    successThreshold: number;
    errorThreshold: number;
    advance: { mode: 'wait'; seconds: number } | { mode: 'approval' };
  };
  wave: number;
  waveCount: number;
  waitUntil: string | null;
  pausedReason: string | null;
  createdByName: string;
  createdAt: string;
}

interface StatusView extends RolloutView {
  progress: { size: number; updated: number; failed: number; rolledBack: number; installing: number; accepted: number; sent: number; pending: number; skipped: number };
  waves: WaveView[];
  window: { open: boolean; nextOpening: string | null };
  approvals: { kind: string; wave: number | null; environment: string | null; approvedByName: string; approvedAt: string }[];
}

function number(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const pct = text.endsWith('%');
  const n = Number(pct ? text.slice(0, -1) : text);
  if (!Number.isFinite(n)) throw new CliError('USAGE', `${flag}: not a number: ${text}`);
  return pct ? n / 100 : n;
}

/** `22:00-04:00`, `22:00-04:00@+02:00`, `09:00-17:00@Z/mon,tue`. */
export function parseWindow(text: string): Record<string, unknown> {
  const m = /^(\d\d:\d\d)-(\d\d:\d\d)(?:@(Z|[+-]\d\d:\d\d))?(?:\/([a-z,]+))?$/.exec(text.trim());
  if (!m) throw new CliError('USAGE', `--window ${text}: expected HH:MM-HH:MM[@±HH:MM][/mon,tue,…]`);
  return { start: m[1], end: m[2], ...(m[3] ? { utcOffset: m[3] } : {}), ...(m[4] ? { days: m[4].split(',') } : {}) };
}

/** `--download-cap 256k`, `--download-window 01:00-05:00@Europe/Paris`. */
function downloadLimits(f: CreateFlags): Record<string, unknown> {
  let cap: number | undefined;
  if (f.downloadCap !== undefined) {
    try {
      cap = parseSize(f.downloadCap.replace(/\/s$/, ''));
    } catch (e) {
      throw new CliError('USAGE', `--download-cap: ${(e as Error).message} (bytes per second)`);
    }
  }
  let window: Record<string, string> | undefined;
  if (f.downloadWindow !== undefined) {
    const m = /^(\d\d:\d\d)-(\d\d:\d\d)@([A-Za-z0-9_+/-]+)$/.exec(f.downloadWindow.trim());
    if (!m) throw new CliError('USAGE', `--download-window ${f.downloadWindow}: expected HH:MM-HH:MM@Zone (an IANA zone, e.g. 01:00-05:00@Europe/Paris)`);
    window = { start: m[1]!, end: m[2]!, timeZone: m[3]! };
  }
  return { ...(cap !== undefined ? { maxBytesPerSecond: cap } : {}), ...(window ? { window } : {}) };
}

export function createBody(f: CreateFlags): Record<string, unknown> {
  const target = {
    ...(f.channel ? { channel: f.channel } : {}),
    ...(f.group ? { group: f.group } : {}),
    ...(f.tag ? { tag: f.tag } : {}),
    ...(f.probe?.length ? { probeIds: f.probe } : {}),
    ...(f.agentBelow ? { agentBelow: f.agentBelow } : {}),
  };
  if (Object.keys(target).length === 0) throw new CliError('USAGE', 'name a target: --channel, --group, --tag, --probe or --agent-below');
  if (f.wait !== undefined && f.approval) throw new CliError('USAGE', 'give --wait or --approval, not both');
  let canary: Record<string, unknown> | undefined;
  if (f.canaryProbe?.length) canary = { probeIds: f.canaryProbe };
  else if (f.canary !== undefined) canary = f.canary.endsWith('%') ? { percent: Number(f.canary.slice(0, -1)) } : { probes: Number(f.canary) };
  let waitMs: number | undefined;
  try {
    waitMs = f.wait === undefined ? undefined : parseDuration(f.wait);
  } catch (e) {
    throw new CliError('USAGE', `--wait: ${(e as Error).message}`);
  }
  const strategy = {
    ...(canary ? { canary } : {}),
    ...(f.waves ? { waves: f.waves.split(',').map((w) => Number(w.replace(/%$/, ''))) } : {}),
    ...(f.success !== undefined ? { successThreshold: number('--success', f.success) } : {}),
    ...(f.errorThreshold !== undefined ? { errorThreshold: number('--error-threshold', f.errorThreshold) } : {}),
    ...(f.approval ? { advance: { mode: 'approval' } } : waitMs !== undefined ? { advance: { mode: 'wait', seconds: waitMs / 1000 } } : {}),
    ...(f.keepCurrent ? { skipCurrent: false } : {}),
  };
  return {
    packSha256: f.pack,
    ...(f.name ? { name: f.name } : {}),
    ...(f.environment ? { environment: f.environment } : {}),
    target,
    strategy,
    ...(f.window?.length ? { windows: f.window.map(parseWindow) } : {}),
    ...(f.downloadCap !== undefined || f.downloadWindow !== undefined ? { download: downloadLimits(f) } : {}),
    ...(f.agentFirst ? { agentPackSha256: f.agentFirst } : {}),
    ...(f.draft ? { draft: true } : {}),
  };
}

function path(id: string, action = ''): string {
  return `/api/v1/rollouts/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;
}

export async function rolloutCreateAction(f: CreateFlags): Promise<void> {
  const client = new ApiClient(await resolveTarget(f));
  const listPacks = async (): Promise<string[]> => (await client.json<{ sha256: string }[]>('GET', '/api/v1/packs')).body.map((p) => p.sha256);
  const pack = await resolvePackRef(f.pack, listPacks);
  const agentFirst = f.agentFirst === undefined ? undefined : await resolvePackRef(f.agentFirst, listPacks);
  const body = createBody({ ...f, pack, ...(agentFirst ? { agentFirst } : {}) });
  const { body: r } = await client.json<RolloutView>('POST', '/api/v1/rollouts', body);
  if (f.json) return printJson(r);
  process.stdout.write(`created ${r.id}: ${r.product} ${r.version}, ${r.waveCount} wave(s), ${r.state}\n`);
}

export async function rolloutStatusAction(id: string | undefined, f: ApiFlags & JsonFlag & { state?: string; watch?: boolean }): Promise<void> {
  const client = new ApiClient(await resolveTarget(f));
  if (f.watch) {
    if (id === undefined) throw new CliError('USAGE', '--watch follows one rollout: give its id');
    return watch(client, id, f.json === true);
  }
  if (id === undefined) {
    const q = f.state ? `?state=${encodeURIComponent(f.state)}` : '';
    const { body } = await client.json<RolloutView[]>('GET', `/api/v1/rollouts${q}`);
    if (f.json) return printJson({ rollouts: body });
    process.stdout.write(
      `${table(
        ['ID', 'NAME', 'STATE', 'VERSION', 'ENVIRONMENT', 'WAVE', 'CREATED'],
        body.map((r) => [r.id, r.name ?? '-', r.state, `${r.product} ${r.version}`, r.environment ?? '-', `${r.wave + 1}/${r.waveCount}`, shortTime(r.createdAt)]),
      )}\n${body.length} rollout(s)\n`,
    );
    return;
  }
  const { body: r } = await client.json<StatusView>('GET', path(id));
  if (f.json) return printJson(r);
  process.stdout.write(`${describe(r)}\n`);
}

const FINAL_STATES = new Set(['completed', 'aborted']);

/** One line per change: the time (with its zone), the state, and the counts that moved. */
function progressLine(r: StatusView): string {
  const p = r.progress;
  const state = `${r.state}${r.pausedReason ? ` (${r.pausedReason})` : ''}${r.waitUntil ? ` until ${shortTime(r.waitUntil)}` : ''}`;
  return `${shortTime(new Date().toISOString())}  ${state}, wave ${Math.max(r.wave + 1, 0)} of ${r.waveCount}: committed ${p.updated} of ${p.size}, failed ${p.failed}, rolled back ${p.rolledBack}, in flight ${p.sent + p.accepted + p.installing}, pending ${p.pending}`;
}

/**
 * `sonde rollout status ID --watch`: follows the rollout until it completes or is aborted,
 * printing a line whenever its state or counts change (with --json, one status object per
 * change), then the full status. Polls once a second: one request, however large the rollout.
 */
async function watch(client: ApiClient, id: string, json: boolean): Promise<void> {
  let last = '';
  for (;;) {
    const { body: r } = await client.json<StatusView>('GET', path(id));
    const line = progressLine(r);
    const key = line.slice(line.indexOf('  ') + 2);
    if (key !== last) {
      last = key;
      process.stdout.write(json ? `${jsonEnvelope(r)}\n` : `${line}\n`);
    }
    if (FINAL_STATES.has(r.state)) {
      if (!json) process.stdout.write(`\n${describe(r)}\n`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function describe(r: StatusView): string {
  const s = r.strategy;
  const canary = s.canary ? (s.canary.probeIds ? `canary ${s.canary.probeIds.join(',')}` : s.canary.percent !== undefined ? `canary ${s.canary.percent} %` : `canary ${s.canary.probes}`) : 'no canary';
  const advance = s.advance.mode === 'approval' ? 'approval before each wave' : `wait ${s.advance.seconds} s between waves`;
  const state = `${r.state}${r.pausedReason ? ` (${r.pausedReason})` : ''}${r.waitUntil ? ` until ${r.waitUntil}` : ''}, wave ${Math.max(r.wave + 1, 0)} of ${r.waveCount}`;
  const p = r.progress;
  const lines = [
    `rollout     ${r.id}${r.name ? `  ${r.name}` : ''}`,
    `state       ${state}`,
    `pack        ${r.product} ${r.version} (${r.packSha256.slice(0, 16)})`,
    `environment ${r.environment ?? '-'}`,
    `target      ${Object.entries(r.target).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`).join(' ')}`,
    `strategy    ${canary}; waves ${s.waves.join('/')} %; pass at ${Math.round(s.successThreshold * 100)} % committed; pause above ${Math.round(s.errorThreshold * 100)} % failed; ${advance}`,
    `window      ${r.window.open ? 'open' : `closed${r.window.nextOpening ? `, opens ${r.window.nextOpening}` : ''}`}`,
    `updated     ${p.updated} of ${p.size} (committed)  failed ${p.failed}  rolled back ${p.rolledBack}  in flight ${p.sent + p.accepted + p.installing}  pending ${p.pending}  skipped ${p.skipped}`,
    '',
    table(
      ['WAVE', 'KIND', 'SIZE', 'COMMITTED', 'FAILED', 'ROLLED-BACK', 'IN FLIGHT', 'PENDING', 'SKIPPED', 'STARTED'],
      // Waves are counted from 1 everywhere the CLI shows them (the canary is wave 1); the API's
      // `wave` fields are 0-based indexes.
      r.waves.map((w) => [String(w.wave + 1), w.kind, String(w.size), String(w.committed), String(w.failed), String(w.rolledBack), String(w.sent + w.accepted + w.installing), String(w.pending), String(w.skipped), w.started ? 'yes' : 'no']),
    ),
  ];
  if (r.approvals.length) {
    lines.push('', 'approvals:');
    for (const a of r.approvals) lines.push(`  ${a.kind}${a.wave !== null ? ` of wave ${a.wave + 1}` : ''}${a.environment && a.kind === 'promotion' ? ` to ${a.environment}` : ''} by ${a.approvedByName} at ${a.approvedAt}`);
  }
  return lines.join('\n');
}

export async function rolloutAction(action: 'start' | 'pause' | 'resume' | 'abort', id: string, f: ApiFlags & JsonFlag): Promise<void> {
  const client = new ApiClient(await resolveTarget(f));
  const { body } = await client.json<RolloutView>('POST', path(id, action));
  if (f.json) return printJson(body);
  process.stdout.write(`${body.id}: ${body.state}${body.pausedReason ? ` (${body.pausedReason})` : ''}, wave ${body.wave + 1} of ${body.waveCount}\n`);
}

export async function rolloutApproveAction(id: string, f: ApiFlags & JsonFlag & { promote?: boolean }): Promise<void> {
  const client = new ApiClient(await resolveTarget(f));
  if (f.promote) {
    const { body } = await client.json<{ environment: string; approvedByName: string; approvedAt: string }>('POST', path(id, 'promote'));
    if (f.json) return printJson(body);
    process.stdout.write(`promotion of ${id}'s pack to ${body.environment} approved by ${body.approvedByName} at ${body.approvedAt}\n`);
    return;
  }
  const { body } = await client.json<{ rollout: RolloutView; approval: { wave: number; approvedByName: string; approvedAt: string } }>('POST', path(id, 'approve'));
  if (f.json) return printJson(body);
  process.stdout.write(`wave ${body.approval.wave + 1} of ${id} approved by ${body.approval.approvedByName}; ${body.rollout.state}\n`);
}

export async function rolloutRetryAction(id: string, f: ApiFlags & JsonFlag & { probe?: string[] }): Promise<void> {
  const client = new ApiClient(await resolveTarget(f));
  const { body } = await client.json<{ rollout: RolloutView; retried: string[] }>('POST', path(id, 'retry'), f.probe?.length ? { probeIds: f.probe } : undefined);
  if (f.json) return printJson(body);
  process.stdout.write(`${body.retried.length} probe(s) retried${body.rollout.state === 'paused' ? ' (the rollout is paused: resume it to send them)' : ''}\n`);
}
