import type { SlotName } from '../layout.js';
import type { BootState } from './boot-env.js';

/**
 * Where releases live and which one boots (RAUC's bootchooser, Mender's bootloader integration).
 * Install order, after RAUC: plan, pre-check, markBad(target), write, verify what was written,
 * and only then activate(target). Backends: `dir` (two folders and a symlink, dir-backend.ts) and
 * `block` (two partitions holding file-system images, a bootloader choosing between them:
 * block-backend.ts, with grub or uboot environments, boot-env.ts). docs/slots.md.
 */
export type SlotHealth = 'good' | 'bad' | 'empty';

export interface SlotInfo {
  readonly name: SlotName;
  readonly health: SlotHealth;
  /** The release version written there, when whole. */
  readonly version: string | null;
  /** Block slots: the device, and what the bootloader thinks of the slot. */
  readonly device?: string;
  readonly bootname?: string;
  readonly boot?: BootState;
}

export interface SlotBackend {
  readonly kind: 'dir' | 'block';
  /** True when switching to a slot takes a reboot (block slots): the new release runs only once it booted. */
  readonly rebootsToSwitch: boolean;
  /** The slot the probe runs (boots) from, or null before the first product install. */
  active(): Promise<SlotName | null>;
  /** The slot that runs next: after the next reboot for block slots (the bootloader's first choice), the active one for dir slots. */
  primary(): Promise<SlotName | null>;
  /** Where a slot's release tree (app/, db/, config/, hooks/) is read: the slot folder, or for block slots the booted root's or the mounted image's. */
  releaseDir(slot: SlotName): string;
  info(slot: SlotName): Promise<SlotInfo>;
  /** Marks a slot unbootable before anything is written into it. */
  markBad(slot: SlotName): Promise<void>;
  /** Marks a slot whole, after its content was written and read back (block: booted and committed). */
  markGood(slot: SlotName, version: string): Promise<void>;
  /** Makes `slot` the one that runs (dir: now, atomically; block: at the next boot, tried once unless it was good). */
  activate(slot: SlotName): Promise<void>;
  /** Makes no slot active (undoing the first install of a fresh probe). */
  deactivate(): Promise<void>;
}
