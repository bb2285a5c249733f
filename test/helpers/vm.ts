import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { ensureVmImages, type VmImages, type VmProbe, type VmStatus } from '../../lxc/src/vm/vm-probe.js';
import { LAB_HOME } from './lab.js';

/**
 * The QEMU probe tests' shared setup (test/vm/): root only (loop devices to build the disk), CI
 * runs as root; the probe's images built once per agent build in the test lab home; a scratch
 * folder per file, removed after it.
 */
// Skipped on a developer machine without root; under CI=true they run, and fail without it.
export const VM_ROOT = process.getuid?.() === 0 || process.env.CI === 'true';

export interface VmBed {
  readonly images: VmImages;
  readonly scratch: string;
}

/** Registers beforeAll/afterAll in the calling describe; the bed is filled once beforeAll ran. */
export function useVmBed(prefix: string): VmBed {
  const bed = {} as { images: VmImages; scratch: string };
  beforeAll(async () => {
    bed.scratch = await mkdtemp(join(tmpdir(), prefix));
    bed.images = await ensureVmImages(resolve(import.meta.dirname, '../..'), join(LAB_HOME, 'images'), () => undefined);
  }, 900_000);
  afterAll(async () => {
    if (bed.scratch) await rm(bed.scratch, { recursive: true, force: true });
  });
  return bed;
}

/**
 * One update as the probe lives it: `pack` put into its FTP drop while it is off, a power-on, its
 * console showing `boots` (the bootloader's and the kernel's path through the update), the probe at
 * rest; then a power-off, and what its disk says (the bootloader environments) read into `readInto`.
 */
export async function dropAndBoot(probe: VmProbe, pack: string, boots: RegExp, readInto: string, timeoutMs = 600_000): Promise<{ status: NonNullable<VmStatus['status']>; disk: Awaited<ReturnType<VmProbe['readDisk']>> }> {
  await probe.prepare({ inbox: [pack] });
  const vm = probe.boot();
  await vm.waitFor(boots, timeoutMs);
  const st = await probe.settled(600_000);
  await probe.cut();
  return { status: st.status!, disk: await probe.readDisk(readInto) };
}
