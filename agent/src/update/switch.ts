import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncDir } from '../../../base/src/fs/atomic.js';
import type { EngineContext } from './context.js';
import { crashPoint } from './crash.js';
import { exists } from './facts.js';
import type { Deployment } from './journal.js';
import { runHook, slotHooks } from './hooks.js';

/**
 * "staged -> switching": the migrated database and config copies are swapped in by rename(2), the
 * live ones moved aside into data/snapshots/<deployment>/ (their exact bytes, for a rollback), and
 * the slot pointer flipped. Every step is a rename, so undo() can tell from the disk alone how
 * far a crash got and put each piece back.
 */
function snapshotDir(ctx: EngineContext, d: Deployment): string {
  return join(ctx.layout.snapshots, d.id);
}

async function moveAside(live: string, aside: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm']) {
    if (await exists(live + suffix)) await rename(live + suffix, aside + suffix);
  }
}

export async function switchRelease(ctx: EngineContext, d: Deployment): Promise<void> {
  const { layout, journal, slots } = ctx;
  const snap = snapshotDir(ctx, d);
  const staging = join(layout.staging, d.id);
  await mkdir(snap, { recursive: true, mode: 0o700 });
  journal.update(d.id, { stage: { snapshotDir: snap } });
  await mkdir(layout.dataDir, { recursive: true });
  await moveAside(layout.db, join(snap, 'probe.db'));
  crashPoint('switch:db-moved-aside');
  await rename(join(staging, 'probe.db'), layout.db);
  await fsyncDir(layout.dataDir);
  await fsyncDir(snap);
  crashPoint('switch:db-swapped');
  await mkdir(layout.etc, { recursive: true });
  if (await exists(layout.config)) await rename(layout.config, join(snap, 'config.json'));
  await rename(join(staging, 'config.json'), layout.config);
  await fsyncDir(layout.etc);
  await fsyncDir(snap);
  crashPoint('switch:config-swapped');
  await slots.activate(d.targetSlot!);
  crashPoint('switch:pointer-flipped');
}

/**
 * Puts the probe back on the release it ran before deployment `d`, from whatever point `d` reached:
 * app stopped, pointer back, database and config back (the exact bytes moved aside, or removal of
 * what a first install created), the target slot marked bad, staging removed, the old app started
 * again if it ran. Idempotent: a crash in the middle is resumed by running it again.
 */
export async function undo(ctx: EngineContext, d: Deployment): Promise<void> {
  const { layout, slots, runner } = ctx;
  const snap = snapshotDir(ctx, d);
  const staging = join(layout.staging, d.id);
  const target = d.targetSlot;
  const active = await slots.active();
  if (target !== null && active === target) {
    await runner.stop();
    crashPoint('rollback:app-stopped');
    // on-rollback: the release going away may undo what it did; the rollback goes on whatever it says.
    await runHook(ctx, d, 'on-rollback', { dir: slotHooks(ctx, d) });
    if (d.activeSlot !== null) await slots.activate(d.activeSlot);
    else await slots.deactivate();
    crashPoint('rollback:pointer-restored');
  } else if (target !== null && slots.rebootsToSwitch && d.activeSlot !== null && (await slots.primary()) !== d.activeSlot) {
    // Block slots, switched but still on the old slot (not rebooted yet, or the bootloader gave up
    // on the new one): the bootloader is told the old slot again, good and first.
    await slots.activate(d.activeSlot);
    crashPoint('rollback:pointer-restored');
    if (d.stage.appStopped) await runner.stop();
  } else if (d.stage.appStopped) {
    // Not switched, but the old app was stopped for the snapshot; make sure no half-state runs.
    await runner.stop();
  }

  // Database: moved aside => put back. Never moved aside, but swapped on a first install
  // (the staging copy is gone while the live file exists) => remove what the install created.
  const dbAside = join(snap, 'probe.db');
  if (await exists(dbAside)) {
    for (const suffix of ['-wal', '-shm']) await rm(layout.db + suffix, { force: true });
    for (const suffix of ['', '-wal', '-shm']) if (await exists(dbAside + suffix)) await rename(dbAside + suffix, layout.db + suffix);
    await fsyncDir(dirname(layout.db));
  } else if (d.stage.dbExisted === false && !(await exists(join(staging, 'probe.db'))) && (await exists(layout.db))) {
    for (const suffix of ['', '-wal', '-shm']) await rm(layout.db + suffix, { force: true });
  }
  crashPoint('rollback:db-restored');
  const configAside = join(snap, 'config.json');
  if (await exists(configAside)) {
    await rename(configAside, layout.config);
    await fsyncDir(layout.etc);
  } else if (d.stage.configExisted === false && !(await exists(join(staging, 'config.json'))) && (await exists(layout.config))) {
    await rm(layout.config, { force: true });
  }
  crashPoint('rollback:config-restored');
  if (target !== null && d.stage.targetTouched) await slots.markBad(target);
  await rm(staging, { recursive: true, force: true });
  await rm(snap, { recursive: true, force: true });
  const back = await slots.active();
  // Block slots booted into the slot going away: the old release runs after the reboot that follows, not here.
  const bootsElsewhere = slots.rebootsToSwitch && back !== (await slots.primary());
  if (back !== null && !bootsElsewhere && d.stage.appWasRunning !== false && (d.stage.appStopped || active === target) && (await runner.running()) === null) {
    await runner.start(slots.releaseDir(back));
    crashPoint('rollback:app-started');
  }
}
