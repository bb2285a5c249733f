import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_HOME } from '../helpers/lab.js';
import { ensureVmImages, VmProbe, type VmImages } from '../../lxc/src/vm/vm-probe.js';

/**
 * The same QEMU probe booted through real U-Boot (issue 20, docs/slots.md "U-Boot"): Debian's
 * u-boot-qemu ROM instead of the BIOS, its boot.scr choosing the slot from BOOT_ORDER and
 * BOOT_<X>_LEFT, which the agent in the guest writes with fw_setenv. Root only, as test/vm.
 */
const ROOT = process.getuid?.() === 0 || process.env.CI === 'true';
const REPO = resolve(import.meta.dirname, '../..');

let images: VmImages;
let scratch: string;

describe.skipIf(!ROOT)('the QEMU probe through U-Boot', () => {
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sonde-vm-uboot-'));
    images = await ensureVmImages(REPO, join(LAB_HOME, 'images'), () => undefined);
  }, 900_000);

  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('A -> B through U-Boot commits; an image whose init fails runs out of boots and U-Boot goes back to the old slot', async () => {
    const probe = new VmProbe(join(scratch, 'story'), images, 'uboot');
    await probe.create();
    try {
      // 1. 1.1.0 into B: the agent gives B one boot (BOOT_B_LEFT=1, first in BOOT_ORDER), U-Boot
      // counts it down and boots B, the agent there health-checks and commits (B good: 3 boots).
      await probe.prepare({ inbox: [images.packs['1.1.0'].path] });
      let vm = probe.boot();
      await vm.waitFor(/sonde-uboot: booting slot A[\s\S]*sonde-uboot: booting slot B[\s\S]*sonde-vm: booted slot B/, 600_000);
      let st = await probe.settled(600_000);
      expect(st.status).toMatchObject({ slot: 'b', version: '1.1.0', dbVersion: 2, lastOutcome: { outcome: 'committed', version: '1.1.0' }, app: { running: true } });
      expect(st.status!.slots.find((s) => s.name === 'b')).toMatchObject({ boot: 'good' });
      await probe.cut();
      let disk = await probe.readDisk(join(scratch, 'read-1'));
      expect(disk.ubootEnv).toMatchObject({ BOOT_ORDER: 'B A', BOOT_B_LEFT: '3' });
      expect(await probe.slotSha256(2, images.packs['1.1.0'].imageBytes)).toBe(images.packs['1.1.0'].imageSha256);

      // 2. A system whose init fails, into A: its one boot is spent on a kernel panic, U-Boot
      // boots B again, and the agent there records the deployment as rolled back.
      await probe.prepare({ inbox: [images.packs['broken-init'].path] });
      vm = probe.boot();
      await vm.waitFor(/sonde-uboot: booting slot A[\s\S]*this system's init fails[\s\S]*sonde-uboot: booting slot B[\s\S]*sonde-vm: booted slot B/, 600_000);
      st = await probe.settled(600_000);
      expect(st.status).toMatchObject({ slot: 'b', version: '1.1.0', lastOutcome: { outcome: 'rolled-back', errorCode: 'SYSTEM_BOOT_FAILED', version: '1.1.1' }, app: { running: true } });
      await probe.cut();
      disk = await probe.readDisk(join(scratch, 'read-2'));
      expect(disk.ubootEnv).toMatchObject({ BOOT_ORDER: 'B A', BOOT_A_LEFT: '0', BOOT_B_LEFT: '3' });
    } finally {
      await probe.cut();
    }
  }, 1_800_000);
});
