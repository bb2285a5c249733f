import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The QEMU probe's U-Boot side (docs/slots.md, "U-Boot"): the same disk boots through GRUB (in
 * the MBR) or through Debian's U-Boot ROM for QEMU (`-bios`, package u-boot-qemu).
 *
 * That U-Boot keeps no environment of its own (CONFIG_ENV_IS_NOWHERE), so the boot script reads
 * and writes the A/B variables itself, as raw sectors in the gap before the first partition (after
 * GRUB's core image): the layout of libubootenv's `fw_env.config` line `/dev/vda 0xF0000 0x4000`,
 * a CRC32 and `name=value` strings, which `env import -c` / `env export -c` read and write. The
 * agent writes it with `fw_setenv`, as on a board whose environment lives on its eMMC.
 *
 * The ROM is the 32-bit one (qemu-x86): the 64-bit one's `zboot` resets the machine right after
 * "Loading bzImage" (seen with Debian's 2023.01 build), the 32-bit one boots the 64-bit kernel.
 * The initrd goes at 768 MiB: at the board's ramdisk_addr_r (64 MiB) the kernel, unpacking
 * itself above 16 MiB, overwrote it ("Initramfs unpacking failed: invalid magic").
 */
export const UBOOT_ROM = '/usr/lib/u-boot/qemu-x86/u-boot.rom';
/** The environment's place on the disk and its size (fw_env.config: device, offset, size). */
export const UBOOT_ENV_OFFSET = 0xf0000;
export const UBOOT_ENV_SIZE = 0x4000;
/** Where the guest finds the environment (fw_env.config) and what a blank one starts as. */
export const VM_FW_ENV_CONFIG = '/etc/fw_env.config';
export const VM_UBOOT_DEFAULT_ENV = '/etc/sonde/uboot-default.env';
/** A disk whose slot A is good and B empty, as U-Boot's variables. */
export const FACTORY_UBOOT_ENV = ['BOOT_ORDER=A B', 'BOOT_A_LEFT=3', 'BOOT_B_LEFT=0'];
/** What the script assumes when the environment is blank or its CRC is wrong (the default env file says the same). */
export const UBOOT_DEFAULT_ENV = ['BOOT_ORDER=A B', 'BOOT_A_LEFT=3', 'BOOT_B_LEFT=3'];

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * The boot script (boot.scr on the boot partition; U-Boot's distro boot finds it there): the
 * first slot in BOOT_ORDER with boots left, counted down before it boots; none left: the first in
 * BOOT_ORDER (a probe that boots beats one that does not; the agent marks bad only a slot it never
 * switched to). No `setexpr` in this build: the count-down is spelled out (3, 2, 1, 0).
 */
export function ubootScript(kernelArgs: string): string {
  const sector = (n: number): string => hex(n / 512);
  return `# Sonde A/B boot for U-Boot (docs/slots.md): BOOT_ORDER and BOOT_<X>_LEFT, written by the agent with fw_setenv
setenv envaddr 0x9000000
# The initrd well above where the kernel unpacks itself (the board's ramdisk_addr_r, 64 MiB, is not).
setenv initrdaddr 0x30000000
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
if virtio read \${envaddr} ${sector(UBOOT_ENV_OFFSET)} ${sector(UBOOT_ENV_SIZE)} && env import -c \${envaddr} ${hex(UBOOT_ENV_SIZE)} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then echo "sonde-uboot: environment read"; else echo "sonde-uboot: no valid environment, the defaults"; fi
test -n "\${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "\${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "\${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3
setenv slot
for s in \${BOOT_ORDER}; do
  if test -z "\${slot}"; then
    if test "\${s}" = "A" && test \${BOOT_A_LEFT} -gt 0; then setenv slot A; fi
    if test "\${s}" = "B" && test \${BOOT_B_LEFT} -gt 0; then setenv slot B; fi
  fi
done
if test "\${slot}" = "A"; then
  if test \${BOOT_A_LEFT} -ge 3; then setenv BOOT_A_LEFT 2; elif test \${BOOT_A_LEFT} = 2; then setenv BOOT_A_LEFT 1; else setenv BOOT_A_LEFT 0; fi
fi
if test "\${slot}" = "B"; then
  if test \${BOOT_B_LEFT} -ge 3; then setenv BOOT_B_LEFT 2; elif test \${BOOT_B_LEFT} = 2; then setenv BOOT_B_LEFT 1; else setenv BOOT_B_LEFT 0; fi
fi
if test -z "\${slot}"; then
  for s in \${BOOT_ORDER}; do if test -z "\${slot}"; then setenv slot \${s}; fi; done
fi
env export -c -s ${hex(UBOOT_ENV_SIZE)} \${envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
virtio write \${envaddr} ${sector(UBOOT_ENV_OFFSET)} ${sector(UBOOT_ENV_SIZE)}
echo "sonde-uboot: booting slot \${slot}"
if test "\${slot}" = "B"; then setenv rootdev /dev/vda3; else setenv rootdev /dev/vda2; fi
setenv bootargs "root=\${rootdev} ro sonde.slot=\${slot} ${kernelArgs}"
load virtio 0:1 \${kernel_addr_r} /vmlinuz
load virtio 0:1 \${initrdaddr} /initrd.img
zboot \${kernel_addr_r} 0 \${initrdaddr} \${filesize}
`;
}

/** fw_env.config for `device` (the guest's /dev/vda, or the disk image file on the host). */
export function fwEnvConfig(device: string): string {
  return `# device offset size (libubootenv): the U-Boot environment in the gap before the first partition\n${device} ${hex(UBOOT_ENV_OFFSET)} ${hex(UBOOT_ENV_SIZE)}\n`;
}

/** Writes boot.scr (mkimage, u-boot-tools) for `kernelArgs` into `bootDir`. */
export async function writeBootScript(bootDir: string, kernelArgs: string): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'sonde-uboot-'));
  try {
    await writeFile(join(tmp, 'boot.cmd'), ubootScript(kernelArgs));
    await run('mkimage', ['-A', 'x86', '-O', 'linux', '-T', 'script', '-C', 'none', '-n', 'sonde a/b', '-d', join(tmp, 'boot.cmd'), join(bootDir, 'boot.scr')]);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Runs fw_printenv / fw_setenv (libubootenv) against the environment inside a disk image file. */
async function withDiskEnv<T>(disk: string, fn: (config: string, defaults: string) => Promise<T>): Promise<T> {
  const tmp = await mkdtemp(join(tmpdir(), 'sonde-uboot-'));
  try {
    await writeFile(join(tmp, 'fw_env.config'), fwEnvConfig(disk));
    await writeFile(join(tmp, 'default.env'), `${UBOOT_DEFAULT_ENV.join('\n')}\n`);
    return await fn(join(tmp, 'fw_env.config'), join(tmp, 'default.env'));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Sets variables in a disk image's U-Boot environment (the factory's, or a test's). */
export async function setDiskUbootEnv(disk: string, vars: readonly string[]): Promise<void> {
  await withDiskEnv(disk, async (config, defaults) => {
    const script = join(config, '..', 'vars');
    await writeFile(script, `${vars.join('\n')}\n`);
    await run('fw_setenv', ['-c', config, '-f', defaults, '-s', script]);
  });
}

/** A disk image's U-Boot environment, as the bootloader will read it. */
export async function readDiskUbootEnv(disk: string): Promise<Record<string, string>> {
  return withDiskEnv(disk, async (config, defaults) => {
    const out = (await run('fw_printenv', ['-c', config, '-f', defaults])).stdout;
    return Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  });
}
