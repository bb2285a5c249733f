import { execFile } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import { UpdateError } from '../errors.js';
import { UNIT_NAME } from '../release-info.js';
import { expand, placeholders, type StartContext } from './runner.js';

/**
 * The `systemd` runner (docs/probe-layout.md, "Runners"): the release names its units; unit
 * files it ships in `app/systemd/` are rendered (placeholders filled in) into the unit folder,
 * enabled when they have an [Install] section, and removed with the release. The agent talks to
 * systemd through `systemctl` and reads the units' output with `journalctl`: no hand-written bus
 * protocol. What it installed and started is kept by the caller (release-runner.ts) in
 * <state>/runner.json, so that a later agent stops exactly those units and removes exactly those files.
 */
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';

export interface SystemdState {
  readonly units: readonly string[];
  /** Unit files this agent wrote into the unit folder (never one it did not write). */
  readonly unitFiles: readonly string[];
  /** NRestarts of each unit right after it was started: a rise means the unit is flapping. */
  readonly restarts: Readonly<Record<string, number>>;
  /** When the units were started (ms since the epoch), for their journal. */
  readonly startedAt: number;
}

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function tool(cmd: string, args: readonly string[], timeoutMs = 90_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && code === 127 ? err.message : '')) });
    });
  });
}

async function systemctl(args: readonly string[], what: string): Promise<Result> {
  const r = await tool('systemctl', args);
  if (r.code !== 0) throw new UpdateError('APP_START_FAILED', `systemctl ${args.join(' ')} failed (${what}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
  return r;
}

/** `systemctl show` of some properties of each unit. */
async function show(units: readonly string[], props: readonly string[]): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  if (units.length === 0) return out;
  const r = await tool('systemctl', ['show', `--property=Id,${props.join(',')}`, '--', ...units], 30_000);
  if (r.code !== 0) return out;
  for (const block of r.stdout.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1);
    }
    if (fields.Id) out[fields.Id] = fields;
  }
  return out;
}

export class SystemdRunner {
  constructor(private readonly unitDir: string = process.env.SONDE_SYSTEMD_UNIT_DIR ?? DEFAULT_UNIT_DIR) {}

  /** The unit files a release ships: `app/systemd/<unit>`; anything else there is refused. */
  private async shipped(c: StartContext): Promise<{ name: string; text: string }[]> {
    const dir = join(c.slotDir, 'app', 'systemd');
    const names = await readdir(dir).catch(() => [] as string[]);
    const vars = placeholders(c);
    const files: { name: string; text: string }[] = [];
    for (const name of names.sort()) {
      if (!UNIT_NAME.test(name)) throw new UpdateError('RELEASE_INVALID', `app/systemd/${name} is not a systemd unit file name`);
      files.push({ name, text: expand(await readFile(join(dir, name), 'utf8'), vars) });
    }
    return files;
  }

  /**
   * Installs the release's unit files (removing those of `previous` it does not ship), reloads
   * systemd and starts the units. Returns what a later stop or check needs.
   */
  async start(c: StartContext, units: readonly string[], previous: SystemdState | null, record: (s: SystemdState) => Promise<void>): Promise<SystemdState> {
    const files = await this.shipped(c);
    const ours = new Set(previous?.unitFiles ?? []);
    for (const f of files) {
      const path = join(this.unitDir, f.name);
      const existing = await readFile(path, 'utf8').catch(() => null);
      if (existing !== null && !ours.has(f.name)) {
        throw new UpdateError('APP_START_FAILED', `${path} exists and was not installed by Sonde: a release never replaces a unit it does not own`);
      }
    }
    const keep = new Set(files.map((f) => f.name));
    // Recorded before any file is written: an agent killed half-way still knows every unit file it
    // may have written (the old release's and the new one's) as its own.
    await record({ units, unitFiles: [...new Set([...ours, ...keep])], restarts: {}, startedAt: Date.now() });
    const retired = [...ours].filter((n) => !keep.has(n));
    if (retired.length > 0) {
      await tool('systemctl', ['disable', '--', ...retired], 30_000);
      for (const n of retired) await rm(join(this.unitDir, n), { force: true });
    }
    for (const f of files) await writeFileAtomic(join(this.unitDir, f.name), f.text);
    const state = (restarts: Record<string, number>, startedAt: number): SystemdState => ({ units, unitFiles: files.map((f) => f.name), restarts, startedAt });
    await systemctl(['daemon-reload'], 'loading the unit files');
    const installable = files.filter((f) => /^\s*\[Install\]\s*$/m.test(f.text)).map((f) => f.name);
    if (installable.length > 0) await systemctl(['enable', '--', ...installable], 'enabling the units at boot');
    const startedAt = Date.now();
    const started = await tool('systemctl', ['start', '--', ...units]);
    if (started.code !== 0) {
      const why = (started.stderr || started.stdout).trim().slice(0, 400);
      throw new UpdateError('APP_START_FAILED', `systemctl start ${units.join(' ')} failed: ${why}`);
    }
    const now = await show(units, ['NRestarts']);
    return state(Object.fromEntries(units.map((u) => [u, Number(now[u]?.NRestarts ?? 0) || 0])), startedAt);
  }

  /** Stops the units, last first. */
  async stop(s: SystemdState): Promise<void> {
    const r = await tool('systemctl', ['stop', '--', ...[...s.units].reverse()]);
    // 5: a unit that is not loaded (its file already gone) is stopped already.
    if (r.code !== 0 && r.code !== 5) throw new UpdateError('APP_START_FAILED', `systemctl stop failed: ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
  }

  /** The main pid of the first active unit (1 when active without one, e.g. a oneshot), or null. */
  async running(s: SystemdState): Promise<number | null> {
    const now = await show(s.units, ['ActiveState', 'MainPID']);
    for (const u of s.units) {
      const st = now[u];
      if (st && (st.ActiveState === 'active' || st.ActiveState === 'reloading')) {
        const pid = Number(st.MainPID);
        return Number.isSafeInteger(pid) && pid > 0 ? pid : 1;
      }
    }
    return null;
  }

  /** Every unit active (not activating, failed or auto-restarting), and none restarted since the start. */
  async check(s: SystemdState): Promise<string | null> {
    const now = await show(s.units, ['ActiveState', 'SubState', 'NRestarts', 'Result']);
    for (const u of s.units) {
      const st = now[u];
      if (!st) return `systemd does not know unit ${u}`;
      if (st.ActiveState !== 'active') return `unit ${u} is ${st.ActiveState} (${st.SubState}${st.Result && st.Result !== 'success' ? `, ${st.Result}` : ''})`;
      const restarts = Number(st.NRestarts ?? 0) || 0;
      if (restarts > (s.restarts[u] ?? 0)) return `unit ${u} restarted ${restarts - (s.restarts[u] ?? 0)} time(s) since it was started: it is flapping`;
    }
    return null;
  }

  /** The units' journal since they were started, last lines first cut to `maxBytes`. */
  async lastWords(s: SystemdState, maxBytes: number): Promise<string | null> {
    const args = ['--no-pager', '-o', 'cat', '-n', '40', `--since=@${Math.floor(s.startedAt / 1000)}`, ...s.units.flatMap((u) => ['-u', u])];
    const r = await tool('journalctl', args, 10_000);
    const text = r.code === 0 ? r.stdout.trim() : '';
    if (text.length === 0) return null;
    const tail = text.length > maxBytes ? text.slice(text.length - maxBytes) : text;
    return tail.slice(tail.length < text.length ? tail.indexOf('\n') + 1 : 0).trim() || null;
  }

  /** Stops the units and removes every unit file this agent installed (the app is uninstalled). */
  async remove(s: SystemdState): Promise<void> {
    await this.stop(s);
    if (s.unitFiles.length > 0) {
      await tool('systemctl', ['disable', '--', ...s.unitFiles], 30_000);
      for (const n of s.unitFiles) await rm(join(this.unitDir, n), { force: true });
      await tool('systemctl', ['daemon-reload'], 30_000);
    }
  }
}
