import { spawn } from 'node:child_process';
import { access, constants, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { HookRunStore, type HookRun } from '../store/hook-runs.js';
import type { EngineContext } from './context.js';
import { crashPoint, type CrashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import type { Deployment } from './journal.js';
import { readSiteVars } from './site-vars.js';

/**
 * Deployment hooks (docs/probe-layout.md, "Hooks"): executables a release ships in its `hooks`
 * payload, run by the engine at named steps of a deployment, what Octopus calls steps and what
 * the seed vendor's installer did by hand. `health` is the health gate's (health.ts); these are
 * the others:
 *
 *   pre-install   after the pack is verified and extracted, before the slot is touched: a
 *                 non-zero exit refuses the pack (HOOK_FAILED), the probe as it was
 *   migrate       after the SQLite migrations, on the staged copies (SONDE_DB_COPY,
 *                 SONDE_CONFIG_COPY): for what the engine does not know; a failure fails the install
 *   post-switch   after the switch, before the new app starts: a failure rolls back
 *   post-commit   after the commit: its failure is in the receipt, the release stays
 *   on-rollback   when a release that was switched in is rolled back, after its app stopped and
 *                 before the old release comes back: its failure is in the receipt, the rollback goes on
 *
 * Each runs at most once per deployment, even across crashes: the run is journaled (agent.db's
 * hook_runs) before the hook starts, and a hook the agent died in is recorded as interrupted and
 * never started again. Its output (stdout and stderr, the last 16 KiB) goes to the receipt with
 * every site-variable value masked.
 */
export const HOOKS = ['pre-install', 'migrate', 'post-switch', 'post-commit', 'on-rollback'] as const;
export type HookName = (typeof HOOKS)[number];

export const DEFAULT_HOOK_TIMEOUT_MS = 60_000;
const MAX_OUTPUT = 16 * 1024;
const MASK = '********';

/** hooks/hooks.json, optional: a timeout per hook. */
const settingsSchema = z.partialRecord(z.enum(HOOKS), z.object({ timeoutMs: z.number().int().min(100).max(3_600_000) }).strict());

async function timeoutOf(hooksDir: string, name: HookName): Promise<number> {
  let text: string;
  try {
    text = await readFile(join(hooksDir, 'hooks.json'), 'utf8');
  } catch {
    return DEFAULT_HOOK_TIMEOUT_MS;
  }
  let parsed;
  try {
    parsed = settingsSchema.safeParse(JSON.parse(text));
  } catch (e) {
    throw new UpdateError('RELEASE_INVALID', 'hooks/hooks.json is not valid JSON', { cause: e });
  }
  if (!parsed.success) throw new UpdateError('RELEASE_INVALID', `hooks/hooks.json: ${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data[name]?.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
}

/** Every occurrence of every site-variable value replaced, longest first. */
export function maskValues(text: string, values: readonly string[]): string {
  let out = text;
  for (const v of [...values].filter((x) => x.length > 0).sort((a, b) => b.length - a.length)) out = out.split(v).join(MASK);
  return out;
}

export interface HookPlace {
  /** The hooks folder of the release the deployment installs: staging's before the slot is written, the slot's after. */
  readonly dir: string | null;
  /** Extra environment for this step (the staged copies for `migrate`). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The target release's hooks folder: the slot's once written (a pack without hooks keeps the active release's). */
export function slotHooks(ctx: EngineContext, d: Deployment): string | null {
  return d.targetSlot === null ? null : join(ctx.slots.releaseDir(d.targetSlot), 'hooks');
}

/**
 * Runs hook `name` of deployment `d` if the release ships it, at most once. Returns its run (or
 * the one recorded earlier), or null when there is no such hook.
 */
export async function runHook(ctx: EngineContext, d: Deployment, name: HookName, place: HookPlace): Promise<HookRun | null> {
  if (place.dir === null) return null;
  const exe = join(place.dir, name);
  try {
    await access(exe, constants.X_OK);
  } catch {
    return null;
  }
  const store = new HookRunStore(ctx.journal.connection);
  const prior = store.get(d.id, name);
  if (prior) {
    // Ran, or started and the agent died in it: never started twice.
    if (prior.endedAt !== null) return prior;
    return store.ended(d.id, name, { exitCode: null, signal: null, ms: 0, output: 'interrupted: the agent stopped while this hook ran; it is not run again' });
  }
  crashPoint(`hook:${name}:before` as CrashPoint);
  const timeoutMs = await timeoutOf(place.dir, name);
  const vars = await readSiteVars(ctx.layout.siteVars);
  store.started(d.id, name);
  const t0 = Date.now();
  const result = await execute(exe, place.dir, timeoutMs, {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    SONDE_HOOK: name,
    SONDE_DEPLOYMENT_ID: d.id,
    SONDE_PROBE_ROOT: ctx.layout.root,
    SONDE_OLD_VERSION: d.fromVersion ?? '',
    SONDE_NEW_VERSION: d.toVersion ?? '',
    SONDE_OLD_SLOT: d.activeSlot === null ? '' : ctx.slots.releaseDir(d.activeSlot),
    SONDE_NEW_SLOT: d.targetSlot === null ? '' : ctx.slots.releaseDir(d.targetSlot),
    // Names only: a hook that needs a value reads the probe's config, as the app does.
    SONDE_SITE_VARS: Object.keys(vars).sort().join(','),
    ...(place.env ?? {}),
  });
  const run = store.ended(d.id, name, { ...result, output: maskValues(result.output, Object.values(vars)), ms: Date.now() - t0 });
  crashPoint(`hook:${name}:after` as CrashPoint);
  return run;
}

/**
 * For the steps whose hook decides (pre-install, migrate, post-switch): HOOK_FAILED for a run that
 * exited non-zero, was killed (a timeout) or interrupted, naming the hook and quoting the end of its
 * (masked) output. No hook, or one that passed: nothing.
 */
export function requirePassed(run: HookRun | null): void {
  if (run === null || run.exitCode === 0) return;
  const how = run.exitCode !== null ? `exited ${run.exitCode}` : run.signal ? `was killed by ${run.signal}` : 'was interrupted';
  const said = run.output.trim().split('\n').slice(-3).join(' / ');
  throw new UpdateError('HOOK_FAILED', `the ${run.hook} hook ${how}${said ? `: ${said.slice(-400)}` : ''}`);
}

function execute(exe: string, cwd: string, timeoutMs: number, env: Record<string, string>): Promise<{ exitCode: number | null; signal: string | null; output: string }> {
  return new Promise((resolve) => {
    let output = '';
    const keep = (c: Buffer): void => {
      output += c.toString('utf8');
      if (output.length > 2 * MAX_OUTPUT) output = output.slice(-MAX_OUTPUT);
    };
    // Its own process group, so a timeout kills what the hook started too.
    const child = spawn(exe, [], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      resolve({ exitCode: 127, signal: null, output: `could not run the hook: ${e.message}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const tail = output.length > MAX_OUTPUT ? output.slice(-MAX_OUTPUT) : output;
      resolve({ exitCode: timedOut ? null : code, signal: timedOut ? 'SIGKILL (timeout)' : signal, output: timedOut ? `${tail}\n(killed after ${timeoutMs} ms)` : tail });
    });
  });
}

export type { HookRun };
