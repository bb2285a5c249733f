import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { extractPack, type Manifest, type VerifiedPack } from '../../../pack/src/index.js';
import type { EngineContext } from './context.js';
import { crashPoint, systemCrashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import type { Deployment } from './journal.js';
import { checkWritable, readBack, writeImage } from './slots/block-device.js';
import { BlockSlotBackend } from './slots/block-backend.js';
import { stageMigrations, type Staged } from './stage.js';
import type { SlotName } from './layout.js';

/**
 * A system pack on block slots (docs/slots.md): the file-system image streamed from the pack's
 * verify/decrypt pass straight into the inactive slot's device, read back against its signed
 * sha256, mounted read-only so the release inside gives its migrations, and only then the rest
 * of staging. The switch (switch.ts) asks the bootloader to try the slot once; the trial reboots
 * into it, and the agent that boots judges the boot (systemTrial).
 */
export function blockSlots(ctx: EngineContext): BlockSlotBackend | null {
  return ctx.slots instanceof BlockSlotBackend ? ctx.slots : null;
}

export async function stageSystem(ctx: EngineContext, d: Deployment, m: Manifest, pack: VerifiedPack, target: SlotName, payloadsDir: string, key: Parameters<typeof extractPack>[1]['key']): Promise<Staged> {
  const slots = blockSlots(ctx);
  if (!slots) throw new UpdateError('RELEASE_INVALID', 'a system pack needs block slots (etc/slots.json, docs/slots.md)');
  const entry = m.payloads.find((p) => p.type === 'system')!;
  const device = slots.slot(target).device;
  // A mount left by an earlier attempt is ours (the agent's mount point); release it first.
  await slots.unmount(target);
  const dev = await checkWritable(device, entry.unpackedSize, target);
  ctx.journal.update(d.id, { stage: { targetTouched: true } });
  await slots.markBad(target);
  crashPoint('stage:target-marked-bad');
  await extractPack(pack, {
    mode: 'extract',
    staging: payloadsDir,
    ...(key ? { key } : {}),
    imageSink: async (_e, plain) => {
      await writeImage(device, plain, dev.bytes);
    },
  });
  crashPoint('stage:slot-written');
  // The read-back: what the device now holds, from the disk, against the signed image hash.
  const got = await readBack(device, entry.unpackedSize);
  if (got !== entry.imageSha256) throw new UpdateError('SLOT_VERIFY_FAILED', `slot ${target} (${device}) reads back ${got}; its signed image is ${entry.imageSha256}`);
  crashPoint('stage:slot-synced');
  const releaseDir = slots.releaseDir(target);
  await slots.mount(target);
  return stageMigrations(ctx, d, releaseDir, Promise.resolve());
}

/** This boot's id: tells "not rebooted yet" from "rebooted, but into the old slot". */
export async function bootId(ctx: EngineContext): Promise<string> {
  const from = blockSlots(ctx)?.file.bootIdFrom ?? '/proc/sys/kernel/random/boot_id';
  return (await readFile(from, 'utf8')).trim();
}

export type BootVerdict = 'reboot-now' | 'booted-target' | 'fell-back';

/**
 * The trial of a system install: before the reboot, ask for it; after it, which slot booted says
 * whether the bootloader took the new one or gave up on it (its try counter ran out).
 */
export async function judgeBoot(ctx: EngineContext, d: Deployment): Promise<BootVerdict> {
  const booted = await ctx.slots.active();
  if (booted === d.targetSlot) return 'booted-target';
  const asked = d.stage.rebootFrom;
  if (asked === undefined || asked === (await bootId(ctx))) return 'reboot-now';
  return 'fell-back';
}

/**
 * Restarts the probe (the slot file's `rebootCommand`, default `reboot`). Started, not awaited:
 * the agent goes on to file and report what it did while init takes the system down. Whatever
 * happens next, the journal already says the reboot was asked for, from which boot.
 */
export async function reboot(ctx: EngineContext, d: Deployment): Promise<void> {
  const slots = blockSlots(ctx)!;
  ctx.journal.update(d.id, { stage: { rebootFrom: await bootId(ctx) } });
  systemCrashPoint('trial:reboot-requested');
  const [cmd, ...args] = slots.file.rebootCommand;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd!, args, { detached: true, stdio: 'ignore' });
    child.once('error', (e) => reject(new UpdateError('SYSTEM_BOOT_FAILED', `the reboot (${slots.file.rebootCommand.join(' ')}) could not start: ${e.message}`, { cause: e })));
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
}

/** After an outcome on block slots: does the probe run what the bootloader will boot? If not, it must reboot. */
export async function needsReboot(ctx: EngineContext): Promise<boolean> {
  if (!blockSlots(ctx)) return false;
  const [booted, primary] = [await ctx.slots.active(), await ctx.slots.primary()];
  return primary !== null && booted !== primary;
}
