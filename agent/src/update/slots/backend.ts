import type { SlotName } from '../layout.js';

/**
 * Where releases live and which one boots (RAUC's bootchooser, Mender's bootloader integration).
 * Install order, after RAUC: plan, pre-check, markBad(target), write, verify what was written,
 * and only then activate(target). `dir` is the backend here; `grub` (grub-editenv) and `uboot`
 * (fw_setenv) implement the same interface later.
 */
export type SlotHealth = 'good' | 'bad' | 'empty';

export interface SlotInfo {
  readonly name: SlotName;
  readonly health: SlotHealth;
  /** The release version written there, when whole. */
  readonly version: string | null;
}

export interface SlotBackend {
  /** The slot the probe runs (boots) from, or null before the first product install. */
  active(): Promise<SlotName | null>;
  info(slot: SlotName): Promise<SlotInfo>;
  /** Marks a slot unbootable before anything is written into it. */
  markBad(slot: SlotName): Promise<void>;
  /** Marks a slot whole, after its content was written and read back. */
  markGood(slot: SlotName, version: string): Promise<void>;
  /** Makes `slot` the one that runs. Atomic. */
  activate(slot: SlotName): Promise<void>;
  /** Makes no slot active (undoing the first install of a fresh probe). */
  deactivate(): Promise<void>;
}
