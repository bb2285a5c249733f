import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withPartition } from '../../../images/src/vm/disk-image.js';
import { writeVmSlotFile, type VmBootloader } from '../../../images/src/vm/data-tree.js';
import { VM_INBOX } from '../../../images/src/vm/root-tree.js';
import { LabError } from '../errors.js';
import { run } from '../host.js';
import type { VmImages, VmPackId } from './vm-probe.js';

/**
 * `sonde lab up --vm` (docs/lab.md, "QEMU probes"): a QEMU probe's own disk, the factory disk
 * copied, its data partition given the probe's enrollment, its address on the lab bridge and the
 * line's system pack in its FTP drop. At its first boot the probe joins the fleet server, installs
 * that image into slot B, reboots into it through GRUB (or U-Boot) and commits: then it reports healthy.
 */
const VM_LINE_PACKS: Readonly<Record<string, VmPackId>> = { '1.0.0': '1.0.0', '1.1.0': '1.1.0' };

export function vmPackFor(version: string): VmPackId {
  const id = VM_LINE_PACKS[version];
  if (!id) throw new LabError('LAB_UNSUPPORTED', `QEMU probes run the sample lines old-stable (1.0.0) and stable (1.1.0); not ${version}`);
  return id;
}

export interface VmProbeDisk {
  readonly dir: string;
  readonly images: VmImages;
  /** The enrollment file's text (`sonde server enroll`). */
  readonly creds: string;
  /** The probe's address on the lab bridge, with its prefix (10.213.N.M/24). */
  readonly address: string;
  readonly version: string;
  /** What boots it (the same disk boots through either): its slot file names the environment the agent writes. */
  readonly bootloader?: VmBootloader;
}

export async function makeVmProbeDisk(o: VmProbeDisk): Promise<void> {
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const disk = join(o.dir, 'disk.img');
  await run('cp', ['--sparse=always', o.images.disk, disk], { code: 'LAB_PROBE_FAILED', timeoutMs: 300_000 });
  const pack = o.images.packs[vmPackFor(o.version)].path;
  await withPartition(disk, 3, async (data) => {
    const creds = join(data, 'sonde', 'enrollment.json');
    await writeFile(creds, o.creds, { mode: 0o600 });
    await chmod(creds, 0o600);
    await writeFile(join(data, 'sonde', 'network'), `ADDR=${o.address}\n`);
    if (o.bootloader === 'uboot') await writeVmSlotFile(data, 'uboot');
    await copyFile(pack, join(data, VM_INBOX.replace(/^\/data\//, ''), pack.split('/').pop()!));
  });
}
