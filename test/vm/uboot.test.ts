import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VmProbe } from '../../lxc/src/vm/vm-probe.js';
import { dropAndBoot, useVmBed, VM_ROOT } from '../helpers/vm.js';

/**
 * The same QEMU probe booted through real U-Boot (issue 20, docs/slots.md "U-Boot"): Debian's
 * u-boot-qemu ROM instead of the BIOS, its boot.scr choosing the slot from BOOT_ORDER and
 * BOOT_<X>_LEFT, which the agent in the guest writes with fw_setenv. Root only, as test/vm.
 */
describe.skipIf(!VM_ROOT)('the QEMU probe through U-Boot', () => {
  const bed = useVmBed('sonde-vm-uboot-');

  it('A -> B through U-Boot commits; an image whose init fails runs out of boots and U-Boot goes back to the old slot', async () => {
    const probe = new VmProbe(join(bed.scratch, 'story'), bed.images, 'uboot');
    await probe.create();
    try {
      const { packs } = bed.images;
      // 1. 1.1.0 into B: the agent gives B one boot (BOOT_B_LEFT=1, first in BOOT_ORDER), U-Boot
      // counts it down and boots B, the agent there health-checks and commits (B good: 3 boots).
      let r = await dropAndBoot(probe, packs['1.1.0'].path, /sonde-uboot: booting slot A[\s\S]*sonde-uboot: booting slot B[\s\S]*sonde-vm: booted slot B/, join(bed.scratch, 'read-1'));
      expect(r.status).toMatchObject({ slot: 'b', version: '1.1.0', dbVersion: 2, lastOutcome: { outcome: 'committed', version: '1.1.0' }, app: { running: true } });
      expect(r.status.slots.find((s) => s.name === 'b')).toMatchObject({ boot: 'good' });
      expect(r.disk.ubootEnv).toMatchObject({ BOOT_ORDER: 'B A', BOOT_B_LEFT: '3' });
      expect(await probe.slotSha256(2, packs['1.1.0'].imageBytes)).toBe(packs['1.1.0'].imageSha256);

      // 2. A system whose init fails, into A: its one boot is spent on a kernel panic, U-Boot
      // boots B again, and the agent there records the deployment as rolled back.
      r = await dropAndBoot(probe, packs['broken-init'].path, /sonde-uboot: booting slot A[\s\S]*this system's init fails[\s\S]*sonde-uboot: booting slot B[\s\S]*sonde-vm: booted slot B/, join(bed.scratch, 'read-2'));
      expect(r.status).toMatchObject({ slot: 'b', version: '1.1.0', lastOutcome: { outcome: 'rolled-back', errorCode: 'SYSTEM_BOOT_FAILED', version: '1.1.1' }, app: { running: true } });
      expect(r.disk.ubootEnv).toMatchObject({ BOOT_ORDER: 'B A', BOOT_A_LEFT: '0', BOOT_B_LEFT: '3' });
    } finally {
      await probe.cut();
    }
  }, 1_800_000);
});
