import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UpdateError } from './errors.js';

/** release.json at the top of an `app` payload (docs/probe-layout.md). */
const range = z.object({ min: z.number().int().nonnegative(), max: z.number().int().nonnegative() }).strict();
const relativePath = z.string().max(256).regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, 'must be a plain relative path inside the app').refine((p) => !p.split('/').includes('..'), 'must stay inside the app');
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'must be an environment variable name');

/** A systemd unit the release runs: a plain unit name, never a path. */
export const UNIT_NAME = /^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,200}\.(service|socket|timer|path|target)$/;

/**
 * How the agent runs the release (agent/src/update/runner/): `process` (the default: `node <entry>`),
 * `exec` (any executable, with arguments and environment) or `systemd` (units the release names;
 * their files, if shipped, in app/systemd/).
 */
export const runnerSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('process') }).strict(),
  z
    .object({
      type: z.literal('exec'),
      /** argv: the executable (relative to the app folder, or absolute), then its arguments. */
      command: z.array(z.string().min(1).max(4096)).min(1).max(64),
      env: z.record(envName, z.string().max(4096)).optional(),
      /** How long a stop waits after SIGTERM before SIGKILL (default 5000). */
      stopTimeoutMs: z.number().int().min(100).max(600_000).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('systemd'),
      /** The units that make up the app, started in this order and stopped in the reverse order. */
      units: z.array(z.string().regex(UNIT_NAME, 'must be a systemd unit name')).min(1).max(32),
    })
    .strict(),
]);

export const releaseInfoSchema = z
  .object({
    product: z.string(),
    version: z.string(),
    /** The Node script of the `process` runner (required by it; other runners ignore it). */
    entry: relativePath.optional(),
    runner: runnerSchema.optional(),
    db: range,
    config: range,
    health: z.object({ path: z.string().startsWith('/') }).strict().optional(),
    fault: z.string().optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if ((r.runner === undefined || r.runner.type === 'process') && r.entry === undefined) {
      ctx.addIssue({ code: 'custom', message: 'the process runner needs an entry', path: ['entry'] });
    }
    if (r.runner?.type === 'systemd' && new Set(r.runner.units).size !== r.runner.units.length) {
      ctx.addIssue({ code: 'custom', message: 'a unit is named twice', path: ['runner', 'units'] });
    }
  });

export type RunnerSpec = z.infer<typeof runnerSchema>;
export type RunnerType = RunnerSpec['type'];

/** The runner a release asks for; `process` when it names none. */
export function runnerOf(release: ReleaseInfo): RunnerSpec {
  return release.runner ?? { type: 'process' };
}

export type ReleaseInfo = z.infer<typeof releaseInfoSchema>;

export async function readReleaseInfo(appDir: string): Promise<ReleaseInfo> {
  let text: string;
  try {
    text = await readFile(join(appDir, 'release.json'), 'utf8');
  } catch (e) {
    throw new UpdateError('RELEASE_INVALID', `the app payload has no release.json`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UpdateError('RELEASE_INVALID', 'release.json is not valid JSON', { cause: e });
  }
  const r = releaseInfoSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new UpdateError('RELEASE_INVALID', `release.json: ${i ? `${i.path.join('.')}: ${i.message}` : 'invalid'}`);
  }
  return r.data;
}
