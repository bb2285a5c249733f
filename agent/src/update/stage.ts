import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import type { Manifest } from '../../../pack/src/index.js';
import type { EngineContext } from './context.js';
import { crashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import { exists, readConfig } from './facts.js';
import type { Deployment } from './journal.js';
import { slotDir } from './layout.js';
import { applyMigrations, loadMigrations, planMigrations, snapshotDatabase, dbVersion } from './migrations.js';
import { applyTemplate, configVersionOf, loadConfigMigrations, migrateConfig, type ConfigDoc } from './config-ops.js';
import type { InstallPlan } from './plan.js';
import { readReleaseInfo, type ReleaseInfo } from './release-info.js';
import { fillTemplate, readSiteVars } from './site-vars.js';
import { requirePassed, runHook } from './hooks.js';

const run = promisify(execFile);

/**
 * The "verified -> staged" step for a slot install (DESIGN.md, the agent's states): the extracted
 * payloads become the inactive slot (marked bad first, read back, synced), the config and the
 * database are migrated on copies in staging. The live database, the live config and the active
 * slot are not touched; the app is stopped only for the database snapshot (quiesced, so no
 * measurement written before the switch is lost) and restarted by undo if anything fails.
 */
export interface Staged {
  readonly release: ReleaseInfo;
  readonly dbVersion: number;
  readonly configVersion: number;
}

async function countEntries(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    n++;
    if (e.isDirectory()) n += await countEntries(join(dir, e.name));
  }
  return n;
}

export async function stageSlot(
  ctx: EngineContext,
  d: Deployment,
  m: Manifest,
  plan: Extract<InstallPlan, { kind: 'slot' }>,
  payloadsDir: string,
  /** Paths each payload left on disk when extracted, by payload name (pack/src/extract.ts). */
  onDisk: ReadonlyMap<string, number>,
): Promise<Staged> {
  const { layout, journal, slots } = ctx;
  const target = slotDir(layout, plan.targetSlot);

  // RAUC's order: mark the target bad, write it, read it back, and only at the switch mark it active.
  journal.update(d.id, { stage: { targetTouched: true } });
  await slots.markBad(plan.targetSlot);
  crashPoint('stage:target-marked-bad');
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  if (plan.inheritActive && plan.activeSlot) {
    // A data- or config-only pack keeps the active release's app: the new slot starts as its copy.
    await cp(slotDir(layout, plan.activeSlot), target, { recursive: true, verbatimSymlinks: true, force: true });
    for (const t of plan.slotPayloads) await rm(join(target, t), { recursive: true, force: true });
    await rm(join(target, 'release-meta.json'), { force: true });
  }
  for (const t of plan.slotPayloads) await rename(join(payloadsDir, t), join(target, t));
  await writeFile(join(target, 'release-meta.json'), `${JSON.stringify({ product: m.product, version: m.version, deployment: d.id }, null, 2)}\n`);
  crashPoint('stage:slot-written');
  // Read back: every payload landed whole. The extractor checked the tar's entries against the
  // signed fileCount; the slot must hold what those entries made, parent directories that the tar
  // only implied included (a tar may omit them), counted the same way.
  for (const p of m.payloads) {
    if (!plan.slotPayloads.includes(p.type)) continue;
    const expected = onDisk.get(p.name) ?? p.fileCount;
    const n = await countEntries(join(target, p.type));
    if (n !== expected) {
      // The slot is marked bad already; emptied too, so that nothing half-written stays on disk
      // to be mistaken for a release or to hold the space the next install needs.
      await rm(target, { recursive: true, force: true });
      await mkdir(target, { recursive: true });
      throw new UpdateError('SLOT_VERIFY_FAILED', `slot ${plan.targetSlot}/${p.type} holds ${n} entries; its payload made ${expected}: the slot was emptied`);
    }
  }
  // One syncfs for the whole slot: its bytes are on disk before anything can point at it. It runs
  // while the config and the database copy are staged below (neither reads the slot's payloads,
  // and the app's stop is mostly waiting), and this step does not end before it has: nothing can
  // point at the slot before the switch, which comes after "staged".
  const slotSynced = run('sync', ['-f', target]);
  slotSynced.catch(() => undefined); // awaited below; an early failure must not go unhandled meanwhile
  return stageMigrations(ctx, d, target, slotSynced);
}

/**
 * The second half of staging, for any slot type: the new release (read from `target`, its release
 * tree: a dir slot, or a block slot's image mounted read-only) gives the config template and ops,
 * the database migrations and the migrate hook; they run on copies in staging. `written` is the
 * slot's own sync, awaited before the step ends.
 */
export async function stageMigrations(ctx: EngineContext, d: Deployment, target: string, written: Promise<unknown>): Promise<Staged> {
  const { layout, journal, runner } = ctx;
  const staging = join(layout.staging, d.id);
  const release = await readReleaseInfo(join(target, 'app'));

  // Config, on a copy: template (product packs), numbered ops, then site variables.
  const live = (await readConfig(layout.config)) ?? {};
  let doc: ConfigDoc = live;
  const configDir = join(target, 'config');
  if (await exists(join(configDir, 'config.template.json'))) {
    const template = (await readConfig(join(configDir, 'config.template.json'))) ?? {};
    doc = applyTemplate(doc, template);
  }
  const migrated = migrateConfig(doc, await loadConfigMigrations(join(configDir, 'ops')), configVersionOf(doc));
  doc = fillTemplate(migrated.doc, await readSiteVars(layout.siteVars));
  const configVersion = configVersionOf(doc);
  if (configVersion < release.config.min || configVersion > release.config.max) {
    throw new UpdateError('CONFIG_VERSION_UNSUPPORTED', `config version ${configVersion} is outside ${release.version}'s range ${release.config.min}..${release.config.max}`);
  }
  await mkdir(staging, { recursive: true, mode: 0o700 });
  // 0600: once filled, the config holds site secrets.
  await writeFileAtomic(join(staging, 'config.json'), `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  crashPoint('stage:config-written');

  // Quiesce the app, then snapshot and migrate the database copy.
  const appWasRunning = (await runner.running()) !== null;
  // appStopped is persisted before the stop acts: a crash while the app is going down must still
  // make undo start it again.
  journal.update(d.id, { stage: { appWasRunning, appStopped: true, dbExisted: await exists(layout.db), configExisted: await exists(layout.config) } });
  await runner.stop();
  crashPoint('stage:app-stopped');
  const copy = join(staging, 'probe.db');
  await rm(copy, { force: true });
  if (await exists(layout.db)) await snapshotDatabase(layout.db, copy);
  crashPoint('stage:db-snapshot');
  const migrations = await loadMigrations(join(target, 'db', 'migrations'));
  const from = (await exists(copy)) ? dbVersion(copy) : 0;
  const version = applyMigrations(copy, planMigrations(migrations, from));
  crashPoint('stage:db-migrated');
  if (version < release.db.min || version > release.db.max) {
    throw new UpdateError('DB_VERSION_UNSUPPORTED', `database version ${version} is outside ${release.version}'s range ${release.db.min}..${release.db.max}`);
  }
  // migrate: what the engine does not know (a second database, a file format), on the copies.
  const migrate = await runHook(ctx, journal.get(d.id)!, 'migrate', {
    dir: join(target, 'hooks'),
    env: { SONDE_STAGING: staging, SONDE_DB_COPY: copy, SONDE_CONFIG_COPY: join(staging, 'config.json') },
  });
  requirePassed(migrate);
  await written;
  crashPoint('stage:slot-synced');
  await run('sync', ['-f', staging]);
  journal.update(d.id, { stage: { stagingDir: staging, releaseVersion: release.version, dbVersion: version, configVersion } });
  return { release, dbVersion: version, configVersion };
}
