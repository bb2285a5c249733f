import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import type { ProbeState } from '../../../base/src/protocol/messages.js';
import { AGENT_VERSION } from '../update/agent-version.js';
import type { Engine } from '../update/engine.js';
import { readSiteVars } from '../update/site-vars.js';
import { readStatus } from '../update/status.js';
import { DiagnosticsError } from './errors.js';
import { Masker } from './masker.js';

/**
 * A diagnostics bundle (docs/agent.md, "Diagnostics"): what a support engineer needs to see why a
 * probe misbehaves, without logging in. A tar.gz of:
 *
 *   bundle.json        what this is: probe, agent version, when, what each file holds
 *   status.json        `sonde agent status --json`: release, slot, app, trust, last outcome
 *   state.json         the state message: health, disk, uptime, inbox
 *   slots.json         the slot states (slots/status.json)
 *   deployments.json   the journal's recent deployments, each with its transitions
 *   receipts/          the newest receipts (the app's last words of a failed start are in them)
 *   app-last-words.txt the running app's recent output
 *   config.json        the app's config, every site variable value masked
 *   agent-config.json  the agent's config (paths and policies; it holds no secret)
 *   agent.log          the agent's recent log lines, site variable values masked
 *
 * Every text goes through the masker first: no site variable value leaves the probe. The
 * enrollment token and keys are never read.
 */
export interface BundleInputs {
  readonly engine: Engine;
  readonly probeId: string;
  readonly state: () => Promise<ProbeState>;
  /** The agent's recent log, or null when this agent keeps none. */
  readonly recentLog: ((maxBytes: number) => string) | null;
  /** The agent's config, as loaded (no secrets: paths and policies). */
  readonly agentConfig: unknown;
  readonly maxBytes: number;
}

export interface Bundle {
  readonly path: string;
  readonly size: number;
  readonly files: readonly string[];
  cleanup(): Promise<void>;
}

const RECEIPTS = 5;
const DEPLOYMENTS = 20;

/** The log budgets tried in turn until the compressed bundle fits `maxBytes`. */
const LOG_BUDGETS = [4 * 1024 * 1024, 1024 * 1024, 256 * 1024, 64 * 1024, 0];

export async function collectBundle(i: BundleInputs): Promise<Bundle> {
  const ctx = i.engine.context;
  const masker = new Masker(await readSiteVars(ctx.layout.siteVars).catch(() => ({})));
  const work = await mkdtemp(join(tmpdir(), 'sonde-diagnostics-'));
  const dir = join(work, 'bundle');
  await mkdir(join(dir, 'receipts'), { recursive: true });
  const files: string[] = [];
  const put = async (name: string, content: unknown): Promise<void> => {
    const text = typeof content === 'string' ? content : `${JSON.stringify(content, null, 2)}\n`;
    await writeFile(join(dir, name), masker.text(text));
    files.push(name);
  };
  try {
    const at = new Date().toISOString();
    await put('status.json', await readStatus(ctx).catch((e: Error) => ({ error: e.message })));
    await put('state.json', await i.state().catch((e: Error) => ({ error: e.message })));
    await put('slots.json', await readJson(ctx.layout.slotStatus));
    await put(
      'deployments.json',
      ctx.journal.history(DEPLOYMENTS).map((d) => ({ ...d, transitions: ctx.journal.transitions(d.id) })),
    );
    for (const name of await newestReceipts(ctx.layout.receipts)) await put(`receipts/${name}`, await readFile(join(ctx.layout.receipts, name), 'utf8'));
    await put('app-last-words.txt', (await ctx.runner.lastWords(64 * 1024).catch(() => null)) ?? '(the app has said nothing, or is not running)\n');
    const config = await readJson(ctx.layout.config);
    await put('config.json', masker.json(config));
    await put('agent-config.json', i.agentConfig);
    const manifest = {
      format: 'sonde-diagnostics-1',
      probeId: i.probeId,
      agentVersion: AGENT_VERSION,
      collectedAt: at,
      masked: { siteVariables: masker.names, rule: 'every site variable value is replaced by [site variable NAME] in every file' },
      files: [...files, 'agent.log'],
    };
    // The log is what grows: cut it until the compressed bundle fits.
    for (const budget of LOG_BUDGETS) {
      const log = i.recentLog ? i.recentLog(budget) : '(this agent keeps no log in memory: see journalctl -u sonde-agent on the probe)\n';
      await writeFile(join(dir, 'agent.log'), masker.text(budget === 0 ? '(left out: the bundle would exceed its size cap)\n' : log));
      await writeFile(join(dir, 'bundle.json'), `${JSON.stringify({ ...manifest, logBytesKept: budget }, null, 2)}\n`);
      const path = join(work, 'diagnostics.tar.gz');
      await createTar({ gzip: { level: 9 }, file: path, cwd: dir, portable: true }, ['bundle.json', ...files, 'agent.log']);
      const size = (await stat(path)).size;
      if (size <= i.maxBytes) return { path, size, files: ['bundle.json', ...files, 'agent.log'], cleanup: () => rm(work, { recursive: true, force: true }) };
    }
    throw new DiagnosticsError('DIAGNOSTICS_TOO_LARGE', `the diagnostics bundle does not fit the ${i.maxBytes} bytes the server accepts, even without the log`);
  } catch (e) {
    await rm(work, { recursive: true, force: true });
    throw e;
  }
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (e) {
    return { unreadable: path, reason: (e as NodeJS.ErrnoException).code ?? 'not JSON' };
  }
}

async function newestReceipts(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => n.endsWith('.json'))
    .sort()
    .slice(-RECEIPTS);
}
