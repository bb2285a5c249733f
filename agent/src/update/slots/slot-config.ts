import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { UpdateError } from '../errors.js';

/**
 * The slot file (docs/slots.md), like RAUC's system.conf: which slots the probe has, of which type,
 * on which device, under which name the bootloader knows them, and which two form the A/B pair.
 * Kept at `<root>/etc/slots.json`; a probe without one has the two `dir` slots under `<root>/slots`.
 * Strict: an unknown key, a relative device, a slot named twice or a pair that is not a/b is
 * `SLOT_CONFIG_INVALID`, and the agent installs nothing until it is fixed.
 */
const bootname = z.string().regex(/^[A-Za-z0-9_]{1,16}$/, 'must be 1-16 letters, digits or _ (a bootloader variable name part)');
const absolute = z.string().max(4096).regex(/^\/[^\0]*$/, 'must be an absolute path');

const dirSlot = z.object({ name: z.enum(['a', 'b']), type: z.literal('dir') }).strict();
const blockSlot = z
  .object({
    name: z.enum(['a', 'b']),
    type: z.literal('block'),
    /** The partition or block device the slot's file-system image is written to. */
    device: absolute,
    /** The slot's name in the bootloader environment (ORDER / BOOT_ORDER) and in `sonde.slot=` on the kernel command line. */
    bootname,
  })
  .strict();

const grub = z
  .object({
    type: z.literal('grub'),
    /** The GRUB environment block (grub-editenv), on the boot partition. */
    env: absolute,
  })
  .strict();
const uboot = z
  .object({
    type: z.literal('uboot'),
    /** fw_printenv/fw_setenv's configuration (libubootenv's fw_env.config). */
    config: absolute,
    /** A default environment for a blank one (fw_setenv -f). */
    defaultEnv: absolute.optional(),
  })
  .strict();

export const slotFileSchema = z
  .object({
    /** Where the booted slot is read from: `sonde.slot=<bootname>` on this command line. */
    bootedFrom: absolute.default('/proc/cmdline'),
    /** This boot's id (tells "not rebooted yet" from "rebooted into the old slot"). */
    bootIdFrom: absolute.default('/proc/sys/kernel/random/boot_id'),
    /** Where the booted slot's file system is: / on a probe (a lab or a test may run the agent beside it). */
    bootedRoot: absolute.default('/'),
    /** Inside every system image: the release's tree (app/, db/, config/, hooks/, release-meta.json). */
    releaseDir: absolute.default('/opt/sonde/release'),
    /** Where the agent mounts an inactive slot read-only to read its release (default <state>/mnt). */
    mountDir: absolute.optional(),
    /** How the agent restarts the probe into the slot it switched to (argv). */
    rebootCommand: z.array(z.string().min(1).max(4096)).min(1).max(16).default(['reboot']),
    bootloader: z.discriminatedUnion('type', [grub, uboot]).optional(),
    slots: z.array(z.discriminatedUnion('type', [dirSlot, blockSlot])).length(2),
    /** The A/B pair: Sonde updates one pair, its two slots named a and b. */
    pair: z.tuple([z.literal('a'), z.literal('b')]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const names = c.slots.map((s) => s.name);
    if (new Set(names).size !== names.length) ctx.addIssue({ code: 'custom', message: 'a slot is named twice', path: ['slots'] });
    const types = new Set(c.slots.map((s) => s.type));
    if (types.size > 1) ctx.addIssue({ code: 'custom', message: 'both slots of the pair must have the same type', path: ['slots'] });
    const blocks = c.slots.filter((s): s is z.infer<typeof blockSlot> => s.type === 'block');
    if (blocks.length > 0 && !c.bootloader) ctx.addIssue({ code: 'custom', message: 'block slots need a bootloader (grub or uboot)', path: ['bootloader'] });
    if (blocks.length === 0 && c.bootloader) ctx.addIssue({ code: 'custom', message: 'dir slots take no bootloader', path: ['bootloader'] });
    if (new Set(blocks.map((s) => s.device)).size !== blocks.length) ctx.addIssue({ code: 'custom', message: 'two slots on one device', path: ['slots'] });
    if (new Set(blocks.map((s) => s.bootname)).size !== blocks.length) ctx.addIssue({ code: 'custom', message: 'two slots with one bootname', path: ['slots'] });
  });

export type SlotFile = z.infer<typeof slotFileSchema>;
export type BlockSlotConfig = Extract<SlotFile['slots'][number], { type: 'block' }>;
export type BootloaderConfig = NonNullable<SlotFile['bootloader']>;

export function parseSlotFile(text: string, where: string): SlotFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UpdateError('SLOT_CONFIG_INVALID', `${where} is not JSON: ${(e as Error).message}`);
  }
  const r = slotFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const at = i.path.join('.') || '(root)';
    const message = i.code === 'unrecognized_keys' ? `unknown key ${(i as { keys: string[] }).keys.join(', ')} at ${at}` : `${at}: ${i.message}`;
    throw new UpdateError('SLOT_CONFIG_INVALID', `${where}: ${message}`);
  }
  return r.data;
}

/** The probe's slot file, or null when it has none (two `dir` slots, the default). */
export async function readSlotFile(path: string): Promise<SlotFile | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UpdateError('SLOT_CONFIG_INVALID', `${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseSlotFile(text, path);
}
