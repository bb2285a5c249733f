import { describe, expect, it } from 'vitest';
import { macFor, qemuArgs } from '../../lxc/src/vm/qemu.js';
import { UBOOT_ROM } from '../../images/src/vm/uboot.js';

/**
 * The QEMU probe's machine (lxc/src/vm/qemu.ts), as the command line says it: no way out of this
 * machine for the guest, one MAC per guest on a shared bridge, U-Boot's ROM when asked. No VM runs.
 */
const netdev = (args: string[]): string => args[args.indexOf('-netdev') + 1]!;
const nic = (args: string[]): string => args[args.indexOf('-device', args.indexOf('-netdev')) + 1]!;

describe('the QEMU probe command line', () => {
  it('user networking is always restricted: the guest reaches only the loopback ports forwarded to it', () => {
    const args = qemuArgs({ disk: '/d.img', serialLog: '/s.log', forwards: [8440, 8441] });
    expect(netdev(args)).toBe('user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8440-tcp:127.0.0.1:8440,guestfwd=tcp:10.0.2.100:8441-tcp:127.0.0.1:8441');
    expect(netdev(qemuArgs({ disk: '/d.img', serialLog: '/s.log' }))).toBe('user,id=n0,restrict=on');
    expect(args).toEqual(expect.arrayContaining(['-accel', 'tcg', '-nodefaults', '-no-user-config']));
    expect(args).not.toContain('-bios');
  });

  it('on a tap, each guest gets a MAC of its own (guests on one bridge with QEMU\'s default MAC cannot talk)', () => {
    const a = qemuArgs({ disk: '/d.img', serialLog: '/s.log', tap: 'slpabc123-1' });
    const b = qemuArgs({ disk: '/d.img', serialLog: '/s.log', tap: 'slpabc123-2' });
    expect(netdev(a)).toBe('tap,id=n0,ifname=slpabc123-1,script=no,downscript=no');
    expect(nic(a)).toBe(`virtio-net-pci,netdev=n0,mac=${macFor('slpabc123-1')}`);
    expect(macFor('slpabc123-1')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(macFor('slpabc123-1')).not.toBe(macFor('slpabc123-2'));
    expect(nic(a)).not.toBe(nic(b));
  });

  it('boots Debian\'s U-Boot ROM instead of the BIOS when asked', () => {
    const args = qemuArgs({ disk: '/d.img', serialLog: '/s.log', bios: UBOOT_ROM });
    expect(args[args.indexOf('-bios') + 1]).toBe('/usr/lib/u-boot/qemu-x86/u-boot.rom');
  });
});
