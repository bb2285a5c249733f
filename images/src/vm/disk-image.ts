import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FACTORY_UBOOT_ENV, setDiskUbootEnv, writeBootScript } from './uboot.js';

const run = promisify(execFile);

/**
 * The QEMU probe's disk (docs/slots.md): an MBR disk with four partitions, GRUB in the MBR gap.
 *
 *   1 boot  ext4: vmlinuz, initrd.img, grub/ (i386-pc modules, grub.cfg, grubenv), boot.scr (U-Boot)
 *   2 A     the first system slot (a file-system image, written whole)
 *   3 B     the second system slot
 *   4 data  ext4: the probe root (database, config, slot file), the agent's state, the drop
 *
 * The gap also holds U-Boot's environment at 0xF0000 (uboot.ts), for the same disk booted through
 * Debian's U-Boot ROM instead of the BIOS and GRUB.
 *
 * Built from files with sfdisk and dd; only grub-install needs the disk as a block device, so the
 * whole disk and its boot partition are attached as loop devices for that step alone
 * (`losetup -o/--sizelimit`: without udev, `losetup -P` makes no partition nodes here), and
 * detached by name.
 */
export const MIB = 1024 * 1024;
export const SECTOR = 512;

export interface DiskLayout {
  readonly boot: number;
  readonly slot: number;
  readonly data: number;
}

export interface Partition {
  readonly start: number;
  readonly bytes: number;
}

export const DEFAULT_LAYOUT: DiskLayout = { boot: 48 * MIB, slot: 224 * MIB, data: 256 * MIB };

/** Offsets of the four partitions: 1 MiB aligned, after the 1 MiB MBR gap GRUB's core image uses. */
export function partitionsOf(l: DiskLayout): Partition[] {
  const parts: Partition[] = [];
  let at = MIB;
  for (const bytes of [l.boot, l.slot, l.slot, l.data]) {
    parts.push({ start: at, bytes });
    at += bytes;
  }
  return parts;
}

export function diskBytes(l: DiskLayout): number {
  const last = partitionsOf(l)[3]!;
  return last.start + last.bytes;
}

/** The GRUB environment's variables for a disk whose slot A is good and B empty. */
export const FACTORY_GRUBENV = ['ORDER=A B', 'A_OK=1', 'A_TRY=0', 'B_OK=0', 'B_TRY=0'];

/**
 * grub.cfg (docs/slots.md has it for people): boot the first slot in ORDER that is OK and not yet
 * tried, marking it tried first; the agent marks it good (TRY=0) once it is up. When every slot
 * has been tried, the counters are reset and the first OK slot boots (better than no boot).
 */
export function grubCfg(kernelArgs: string): string {
  return `# Sonde A/B boot (docs/slots.md): ORDER and per-slot OK/TRY in grubenv, written by the agent
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set ORDER="A B"
set A_OK=0
set A_TRY=0
set B_OK=0
set B_TRY=0
load_env ORDER A_OK A_TRY B_OK B_TRY
set pick=""
for s in $ORDER; do
  if [ -z "$pick" -a "$s" = "A" -a "$A_OK" = "1" -a "$A_TRY" = "0" ]; then set pick=A; set A_TRY=1; fi
  if [ -z "$pick" -a "$s" = "B" -a "$B_OK" = "1" -a "$B_TRY" = "0" ]; then set pick=B; set B_TRY=1; fi
done
if [ -z "$pick" ]; then
  set A_TRY=0
  set B_TRY=0
  for s in $ORDER; do
    if [ -z "$pick" -a "$s" = "A" -a "$A_OK" = "1" ]; then set pick=A; set A_TRY=1; fi
    if [ -z "$pick" -a "$s" = "B" -a "$B_OK" = "1" ]; then set pick=B; set B_TRY=1; fi
  done
fi
save_env A_TRY B_TRY
echo "sonde-grub: booting slot $pick"
if [ "$pick" = "B" ]; then set default=1; else set default=0; fi
menuentry "slot A" {
  linux /vmlinuz root=/dev/vda2 ro sonde.slot=A ${kernelArgs}
  initrd /initrd.img
}
menuentry "slot B" {
  linux /vmlinuz root=/dev/vda3 ro sonde.slot=B ${kernelArgs}
  initrd /initrd.img
}
`;
}

export const KERNEL_ARGS = 'console=ttyS0 panic=-1 quiet fsck.mode=skip rootwait';

/** Writes `file`'s bytes into `disk` at `offset` (no truncation). */
export async function writeAt(disk: string, offset: number, file: string | null, bytes?: number): Promise<void> {
  const out = await open(disk, 'r+');
  try {
    if (file === null) {
      const zero = Buffer.alloc(MIB);
      for (let done = 0; done < (bytes ?? 0); done += MIB) await out.write(zero, 0, Math.min(MIB, bytes! - done), offset + done);
      return;
    }
    const src = await open(file, 'r');
    try {
      const buf = Buffer.allocUnsafe(4 * MIB);
      let pos = 0;
      for (;;) {
        const { bytesRead } = await src.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await out.write(buf, 0, bytesRead, offset + pos);
        pos += bytesRead;
      }
    } finally {
      await src.close();
    }
  } finally {
    await out.close();
  }
}

export interface DiskOptions {
  readonly out: string;
  readonly layout?: DiskLayout;
  /** Slot A's image (ext4); B starts empty. */
  readonly slotA: string;
  /** The data partition's tree (probe root, agent config, drop). */
  readonly dataTree: string;
  readonly kernel: string;
  readonly initrd: string;
}

async function loopAttach(file: string, offset?: number, size?: number): Promise<string> {
  const args = ['-f', '--show', ...(offset !== undefined ? ['-o', String(offset), '--sizelimit', String(size)] : []), file];
  return (await run('losetup', args)).stdout.trim();
}

export async function buildDisk(o: DiskOptions): Promise<void> {
  const l = o.layout ?? DEFAULT_LAYOUT;
  const parts = partitionsOf(l);
  const slotBytes = (await stat(o.slotA)).size;
  if (slotBytes > l.slot) throw new Error(`slot A's image is ${slotBytes} bytes; a slot holds ${l.slot}`);
  await rm(o.out, { force: true });
  await run('truncate', ['-s', String(diskBytes(l)), o.out]);
  const script = ['label: dos', ...parts.map((p, i) => `start=${p.start / SECTOR}, size=${p.bytes / SECTOR}, type=83${i === 0 ? ', bootable' : ''}`)].join('\n');
  await new Promise<void>((resolve, reject) => {
    const c = execFile('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', o.out], (e) => (e ? reject(e) : resolve()));
    c.stdin!.end(`${script}\n`);
  });
  const work = await mkdtemp(join(tmpdir(), 'sonde-vmdisk-'));
  try {
    // Boot partition: kernel, initrd, grub.cfg and a factory grubenv, as an ext4 image.
    const boot = join(work, 'boot');
    await mkdir(join(boot, 'grub'), { recursive: true });
    await copyFile(o.kernel, join(boot, 'vmlinuz'));
    await copyFile(o.initrd, join(boot, 'initrd.img'));
    await writeFile(join(boot, 'grub', 'grub.cfg'), grubCfg(KERNEL_ARGS));
    // The same disk boots through U-Boot's ROM too (uboot.ts): its script beside the kernel.
    await writeBootScript(boot, KERNEL_ARGS);
    await run('grub-editenv', [join(boot, 'grub', 'grubenv'), 'create']);
    await run('grub-editenv', [join(boot, 'grub', 'grubenv'), 'set', ...FACTORY_GRUBENV]);
    const bootImg = join(work, 'boot.img');
    await run('mkfs.ext4', ['-q', '-F', '-L', 'sonde-boot', '-E', 'root_owner=0:0', '-d', boot, bootImg, `${l.boot / 1024}k`]);
    await writeAt(o.out, parts[0]!.start, bootImg);
    await writeAt(o.out, parts[1]!.start, o.slotA);
    const dataImg = join(work, 'data.img');
    await run('mkfs.ext4', ['-q', '-F', '-L', 'sonde-data', '-E', 'root_owner=0:0', '-d', o.dataTree, dataImg, `${l.data / 1024}k`]);
    await writeAt(o.out, parts[3]!.start, dataImg);
    // GRUB: core image into the MBR gap, modules into the boot partition's grub/.
    const whole = await loopAttach(o.out);
    let bootLoop: string | null = null;
    const mnt = join(work, 'mnt');
    let mounted = false;
    try {
      bootLoop = await loopAttach(o.out, parts[0]!.start, parts[0]!.bytes);
      await mkdir(mnt);
      await run('mount', [bootLoop, mnt]);
      mounted = true;
      await run('grub-install', ['--target=i386-pc', `--boot-directory=${mnt}`, '--modules=part_msdos ext2 loadenv test echo linux normal serial terminal', '--no-floppy', whole], { timeout: 120_000 });
    } finally {
      if (mounted) await run('umount', [mnt]);
      if (bootLoop) await run('losetup', ['-d', bootLoop]);
      await run('losetup', ['-d', whole]);
    }
    // U-Boot's environment in the gap after GRUB's core image: slot A good, B empty.
    await setDiskUbootEnv(o.out, FACTORY_UBOOT_ENV);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Runs `fn` with partition `index` (0-3) of `disk` mounted at a temporary folder, then unmounts and detaches it. */
export async function withPartition<T>(disk: string, index: number, fn: (dir: string) => Promise<T>, layout: DiskLayout = DEFAULT_LAYOUT, opts: { readOnly?: boolean } = {}): Promise<T> {
  const p = partitionsOf(layout)[index]!;
  const loop = await loopAttach(disk, p.start, p.bytes);
  const dir = await mkdtemp(join(tmpdir(), 'sonde-vmpart-'));
  let mounted = false;
  try {
    await run('mount', [...(opts.readOnly ? ['-o', 'ro'] : []), loop, dir]);
    mounted = true;
    return await fn(dir);
  } finally {
    if (mounted) await run('umount', [dir]);
    await run('losetup', ['-d', loop]);
    await rm(dir, { recursive: true, force: true });
  }
}
