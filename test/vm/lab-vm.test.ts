import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { labTag } from '../../lxc/src/network.js';
import { LAB_HOME, LAB_SKIP, sonde } from '../helpers/lab.js';

/**
 * The contract of issue 20 for the lab: `sonde lab up --vm --count 1 --line stable` returns when the
 * QEMU probe reports healthy to the lab's fleet server (it boots the factory slot, installs the
 * line's system image, reboots into it through GRUB, commits), and `sonde lab down --all` leaves
 * no QEMU, tap device, loop device or mount behind. A second probe in the same lab boots the same
 * disk through Debian's U-Boot ROM (`--bootloader uboot`).
 */
const LAB = 'vmlab';

function leftovers(): { qemu: number; taps: number; loops: number; mounts: number } {
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('qemu-system-x86_64') && l.includes(`-name ${LAB}-`));
  const tag = labTag(join(LAB_HOME, 'labs', LAB));
  const links = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`slv${tag}-`) || l.includes(`slb${tag}`));
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(LAB_HOME));
  const mounts = execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('sonde-vmpart') || l.includes(`labs/${LAB}`));
  return { qemu: ps.length, taps: links.length, loops: loops.length, mounts: mounts.length };
}

describe.skipIf(LAB_SKIP)('sonde lab up --vm: a QEMU probe on the lab bridge', () => {
  it('comes up healthy on the stable line through a real GRUB reboot, a second probe through U-Boot, and lab down --all leaves nothing behind', async () => {
    try {
      const up = await sonde(['lab', 'up', '--vm', '--count', '1', '--line', 'stable', '--lab', LAB], {}, 1_500_000);
      expect(up.stderr).toMatch(/1 probe\(s\) healthy on 1\.1\.0/);
      expect(up.code).toBe(0);
      expect(up.stdout.trim()).toBe(`${LAB}-01`);
      const ls = await sonde(['lab', 'ls', '--json', '--lab', LAB]);
      const view = JSON.parse(ls.stdout) as { probes: { name: string; container: string; online: boolean; version: string; health: string }[] };
      expect(view.probes).toEqual([expect.objectContaining({ name: `${LAB}-01`, container: 'running', online: true, version: '1.1.0', health: 'ok' })]);
      const logs = await sonde(['lab', 'logs', `${LAB}-01`, '--lab', LAB]);
      expect(logs.stdout).toMatch(/sonde-grub: booting slot A[\s\S]*sonde-grub: booting slot B[\s\S]*sonde-vm: booted slot B/);
      expect(leftovers().qemu).toBe(1);

      // The same lab, a probe booting through U-Boot: its own slot file, U-Boot's environment.
      const bad = await sonde(['lab', 'up', '--vm', '--bootloader', 'lilo', '--lab', LAB]);
      expect(bad.stderr).toMatch(/--bootloader must be grub or uboot/);
      expect(bad.code).not.toBe(0);
      const uboot = await sonde(['lab', 'up', '--vm', '--bootloader', 'uboot', '--count', '1', '--line', 'stable', '--lab', LAB], {}, 1_500_000);
      expect(uboot.stderr).toMatch(/booting through U-Boot[\s\S]*1 probe\(s\) healthy on 1\.1\.0/);
      expect(uboot.stdout.trim()).toBe(`${LAB}-02`);
      const ulogs = await sonde(['lab', 'logs', `${LAB}-02`, '--lab', LAB]);
      expect(ulogs.stdout).toMatch(/sonde-uboot: booting slot A[\s\S]*sonde-uboot: booting slot B[\s\S]*sonde-vm: booted slot B/);
      expect(ulogs.stdout).not.toMatch(/sonde-grub/);
      expect(leftovers().qemu).toBe(2);
    } finally {
      const down = await sonde(['lab', 'down', '--all', '--lab', LAB]);
      expect(down.code).toBe(0);
    }
    expect(leftovers()).toEqual({ qemu: 0, taps: 0, loops: 0, mounts: 0 });
  }, 3_000_000);
});
