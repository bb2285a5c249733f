import Database from 'better-sqlite3';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import type { EngineContext } from './context.js';
import { UpdateError } from './errors.js';
import { exists, readConfig } from './facts.js';
import type { Deployment, Release } from './journal.js';
import { dbVersion, loadMigrations, snapshotDatabase } from './migrations.js';
import { configVersionOf } from './config-ops.js';
import { readReleaseInfo } from './release-info.js';
import { blockSlots } from './system-install.js';

/**
 * Staging of `sonde agent rollback`: back to the previous committed release, whose slot is still
 * whole. Its database is the live one taken down with the current release's `.down.sql`
 * migrations (data written since is kept), its config the one it ran with (kept in the current
 * release's snapshot). Then the ordinary switch, trial and commit follow, so a rollback that turns
 * out unhealthy is itself undone.
 */
export function rollbackTarget(ctx: EngineContext): { current: Release; previous: Release } {
  const [current, previous] = ctx.journal.releases();
  if (!current || !previous || previous.slot === null || previous.slot === current.slot) {
    throw new UpdateError('ROLLBACK_UNAVAILABLE', 'there is no previous release in the other slot to return to');
  }
  if (previous.securityVersion < ctx.journal.securityFloor()) {
    throw new UpdateError('ROLLBACK_BELOW_SECURITY_FLOOR', `${previous.version} (securityVersion ${previous.securityVersion}) is below the probe's security floor ${ctx.journal.securityFloor()}`);
  }
  return { current, previous };
}

export async function stageRollback(ctx: EngineContext, d: Deployment, current: Release, previous: Release): Promise<void> {
  const { layout, journal, slots, runner } = ctx;
  const target = previous.slot!;
  const info = await slots.info(target);
  if (info.health !== 'good' || info.version !== previous.version) {
    throw new UpdateError('ROLLBACK_UNAVAILABLE', `slot ${target} no longer holds ${previous.version} whole (it is ${info.health}${info.version ? `, ${info.version}` : ''})`);
  }
  // A block slot not booted is read through the agent's read-only mount of it (as after a write).
  await blockSlots(ctx)?.mount(target);
  const release = await readReleaseInfo(join(slots.releaseDir(target), 'app'));
  const staging = join(layout.staging, d.id);
  await mkdir(staging, { recursive: true, mode: 0o700 });

  // Config: the one the previous release ran with, when the current release's snapshot still has it.
  const kept = join(layout.snapshots, current.deploymentId, 'config.json');
  const doc = (await exists(kept)) ? await readConfig(kept) : await readConfig(layout.config);
  const configVersion = doc ? configVersionOf(doc) : 0;
  if (configVersion < release.config.min || configVersion > release.config.max) {
    throw new UpdateError('ROLLBACK_UNAVAILABLE', `no config that ${previous.version} accepts is left (version ${configVersion})`);
  }
  await writeFileAtomic(join(staging, 'config.json'), `${JSON.stringify(doc ?? {}, null, 2)}\n`, { mode: 0o600 });

  const appWasRunning = (await runner.running()) !== null;
  // appStopped is persisted before the stop acts: a crash while the app is going down must still
  // make undo start it again.
  journal.update(d.id, { stage: { appWasRunning, appStopped: true, dbExisted: await exists(layout.db), configExisted: await exists(layout.config) } });
  await runner.stop();
  const copy = join(staging, 'probe.db');
  await rm(copy, { force: true });
  if (await exists(layout.db)) await snapshotDatabase(layout.db, copy);
  else await copyFile(join(layout.snapshots, current.deploymentId, 'probe.db'), copy);
  const downs = (await loadMigrations(join(ctx.slots.releaseDir(current.slot!), 'db', 'migrations')))
    .filter((m) => m.version > (previous.dbVersion ?? 0) && m.version <= dbVersion(copy))
    .sort((a, b) => b.version - a.version);
  const db = new Database(copy);
  try {
    for (const m of downs) {
      if (m.down === null) throw new UpdateError('ROLLBACK_UNAVAILABLE', `migration ${m.version}-${m.name} has no .down.sql`);
      db.transaction(() => {
        db.exec(m.down!);
        db.pragma(`user_version = ${m.version - 1}`);
      })();
    }
  } catch (e) {
    if (e instanceof UpdateError) throw e;
    throw new UpdateError('MIGRATION_FAILED', `a down migration failed: ${(e as Error).message}`, { cause: e });
  } finally {
    db.close();
  }
  const version = dbVersion(copy);
  if (version < release.db.min || version > release.db.max) {
    throw new UpdateError('DB_VERSION_UNSUPPORTED', `database version ${version} is outside ${previous.version}'s range ${release.db.min}..${release.db.max}`);
  }
  journal.update(d.id, { activeSlot: current.slot, targetSlot: target, stage: { stagingDir: staging, releaseVersion: release.version, dbVersion: version, configVersion } });
}
