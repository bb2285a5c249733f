import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { parseSecretJson } from '../../../base/src/fs/secret-json.js';
import type { EngineContext } from './context.js';
import { configVersionOf, type ConfigDoc } from './config-ops.js';
import { UpdateError } from './errors.js';
import type { ProbeFacts } from './journal.js';
import type { Layout } from './layout.js';
import { dbVersion } from './migrations.js';
import { readReleaseInfo, type ReleaseInfo } from './release-info.js';

/** What the probe is right now, read from disk: the facts receipts and status report. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function readConfig(path: string): Promise<ConfigDoc | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  // config.json holds site variables filled in: a syntax error names the line, never the text.
  let v: unknown;
  try {
    v = parseSecretJson(text, path);
  } catch (e) {
    throw new UpdateError('CONFIG_INVALID', (e as Error).message);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UpdateError('CONFIG_INVALID', `${path} is not a JSON object`);
  return v as ConfigDoc;
}

export async function probeFacts(ctx: EngineContext): Promise<ProbeFacts> {
  const slot = await ctx.slots.active();
  const release = ctx.journal.releases()[0] ?? null;
  let db: number | null = null;
  if (await exists(ctx.layout.db)) {
    try {
      db = dbVersion(ctx.layout.db);
    } catch {
      db = null;
    }
  }
  const config = await readConfig(ctx.layout.config).catch(() => null);
  return { version: release?.version ?? null, slot, dbVersion: db, configVersion: config ? configVersionOf(config) : null };
}

/** The release in the active slot (its release.json), or null when there is none or it is unreadable. */
export async function activeRelease(ctx: Pick<EngineContext, 'slots'>, slot: string | null): Promise<ReleaseInfo | null> {
  if (slot !== 'a' && slot !== 'b') return null;
  try {
    return await readReleaseInfo(join(ctx.slots.releaseDir(slot), 'app'));
  } catch {
    return null;
  }
}

const identitySchema = z.object({ model: z.string().min(1), serial: z.string().optional() }).strict();

/** The probe's identity (<root>/etc/probe.json): its model decides which packs are compatible. */
export async function probeModel(layout: Layout, fallback?: string): Promise<string | null> {
  try {
    const r = identitySchema.safeParse(JSON.parse(await readFile(layout.probeIdentity, 'utf8')));
    if (!r.success) throw new UpdateError('CONFIG_INVALID', `${layout.probeIdentity}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    return r.data.model;
  } catch (e) {
    if (e instanceof UpdateError) throw e;
    return fallback ?? null;
  }
}

/** A fresh probe adopts the model its first product is built for. */
export async function recordModel(layout: Layout, model: string): Promise<void> {
  if (await exists(layout.probeIdentity)) return;
  await writeFileAtomic(layout.probeIdentity, `${JSON.stringify({ model }, null, 2)}\n`);
}
