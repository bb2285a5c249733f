import { assertNever } from '../../../base/src/errors/sonde-error.js';
import type { Manifest, PayloadType } from '../../../pack/src/index.js';
import { otherSlot, type SlotName } from './layout.js';
import { UpdateError } from './errors.js';

/**
 * The install plan: a pure function of the verified manifest and the active slot (RAUC plans
 * before it writes). It says where each payload goes and whether the install switches slots.
 */
export type InstallPlan =
  | {
      readonly kind: 'slot';
      readonly activeSlot: SlotName | null;
      readonly targetSlot: SlotName;
      /** Payload types that become folders of the new slot. */
      readonly slotPayloads: readonly PayloadType[];
      /** No app payload: the new slot starts as a copy of the active one. */
      readonly inheritActive: boolean;
      readonly migratesDb: boolean;
      readonly migratesConfig: boolean;
      /** A system image for a block slot (system-install.ts); its release tree is inside the image. */
      readonly system: boolean;
    }
  | { readonly kind: 'license' }
  | { readonly kind: 'trust' }
  /** The agent's own build, into its inactive agent slot (self-update.ts); the app's slots are not touched. */
  | { readonly kind: 'agent' };

/** Folders a dir slot holds; db and config are kept too, so a release carries its own migrations. (A `system` image goes to a block slot whole.) */
export const SLOT_FOLDERS: readonly PayloadType[] = ['app', 'data', 'hooks', 'db', 'config'];

export function planInstall(m: Manifest, activeSlot: SlotName | null, slotKind: 'dir' | 'block' = 'dir'): InstallPlan {
  const types = new Set(m.payloads.map((p) => p.type));
  if ((m.kind === 'product' || m.kind === 'servicepack') && (types.has('system') || slotKind === 'block')) {
    // Block slots take whole file-system images, and an image fills a block slot alone (docs/slots.md).
    if (slotKind !== 'block') throw new UpdateError('RELEASE_INVALID', 'a system pack needs block slots (etc/slots.json); this probe has dir slots');
    if (!types.has('system') || m.payloads.length !== 1) throw new UpdateError('RELEASE_INVALID', 'this probe has block slots: its product and service packs carry exactly one payload, a system image');
    if (activeSlot === null) throw new UpdateError('SYSTEM_BOOT_FAILED', 'the booted slot is not one of the pair (no sonde.slot= of etc/slots.json on the kernel command line)');
    return { kind: 'slot', activeSlot, targetSlot: otherSlot(activeSlot), slotPayloads: [], inheritActive: false, migratesDb: true, migratesConfig: true, system: true };
  }
  switch (m.kind) {
    case 'license':
      if (!types.has('license')) throw new UpdateError('RELEASE_INVALID', 'a license pack needs a license payload');
      return { kind: 'license' };
    case 'trust':
      if (!types.has('trust')) throw new UpdateError('RELEASE_INVALID', 'a trust pack needs a trust payload');
      return { kind: 'trust' };
    case 'agent':
      return { kind: 'agent' };
    case 'product':
    case 'servicepack': {
      if (m.kind === 'product' && !types.has('app')) throw new UpdateError('RELEASE_INVALID', 'a product pack needs an app payload');
      const inheritActive = !types.has('app');
      if (inheritActive && activeSlot === null) throw new UpdateError('POLICY_NO_BASE_RELEASE', 'a pack without an app payload needs an installed release');
      return {
        kind: 'slot',
        activeSlot,
        targetSlot: activeSlot === null ? 'a' : otherSlot(activeSlot),
        slotPayloads: SLOT_FOLDERS.filter((t) => types.has(t)),
        inheritActive,
        migratesDb: types.has('db'),
        migratesConfig: types.has('config'),
        system: false,
      };
    }
    default:
      return assertNever(m.kind, 'pack kind');
  }
}
