import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BootChooser, bootEnvOf, UBOOT_GOOD_TRIES } from '../../agent/src/update/slots/boot-env.js';
import { parseSlotFile } from '../../agent/src/update/slots/slot-config.js';
import { scratch } from '../helpers/packs.js';

/**
 * The bootloader environments through their own tools (grub-editenv; fw_printenv/fw_setenv of
 * libubootenv on a file-backed environment) and the slot file's validation (docs/slots.md).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-bootenv-');
});
afterAll(async () => {
  await tmp.cleanup();
});

describe('grub environment (grub-editenv): ORDER and per-slot OK/TRY, as RAUC', () => {
  it('tries a new slot once, and falls back to the good one when the try is not confirmed', async () => {
    const env = join(tmp.dir, 'grubenv');
    execFileSync('grub-editenv', [env, 'create']);
    const c = new BootChooser(bootEnvOf({ type: 'grub', env }), ['A', 'B']);
    await c.markGood('A', { primary: true });
    await c.markBad('B');
    expect(await c.primary()).toBe('A');
    await c.tryOnce('B');
    expect(await c.primary()).toBe('B');
    expect(await c.state('B')).toBe('good');
    // GRUB boots B, setting B_TRY=1 first (grub.cfg); unconfirmed, the next boot takes A.
    execFileSync('grub-editenv', [env, 'set', 'B_TRY=1']);
    expect(await c.state('B')).toBe('trying');
    expect(await c.primary()).toBe('A');
    // Confirmed instead: B is good and first.
    await c.markGood('B', { primary: true });
    expect(await c.primary()).toBe('B');
    expect(execFileSync('grub-editenv', [env, 'list'], { encoding: 'utf8' })).toContain('ORDER=B A');
  });

  it('a missing grub-editenv or environment is BOOTLOADER_ENV_FAILED, not a crash', async () => {
    const c = new BootChooser(bootEnvOf({ type: 'grub', env: join(tmp.dir, 'no-such-dir', 'grubenv') }), ['A', 'B']);
    await expect(c.markBad('B')).rejects.toMatchObject({ code: 'BOOTLOADER_ENV_FAILED' });
  });
});

/** A blank file-backed U-Boot environment (16 KiB), its fw_env.config, and a chooser over it. */
async function ubootEnvFile(name: string): Promise<{ config: string; c: BootChooser }> {
  const file = join(tmp.dir, `uboot-${name}.env`);
  execFileSync('truncate', ['-s', '16384', file]);
  const config = join(tmp.dir, `fw_env-${name}.config`);
  await writeFile(config, `${file} 0x0 0x4000\n`);
  const defaults = join(tmp.dir, `default-${name}.env`);
  await writeFile(defaults, 'BOOT_ORDER=A B\n');
  return { config, c: new BootChooser(bootEnvOf({ type: 'uboot', config, defaultEnv: defaults }), ['A', 'B']) };
}

describe('U-Boot environment (fw_setenv on a file): BOOT_ORDER and BOOT_x_LEFT', () => {
  it('tries a new slot with one boot left, counts good slots at three, marks bad at zero', async () => {
    const { config, c } = await ubootEnvFile('plain');
    await c.markGood('A', { primary: true });
    await c.markBad('B');
    expect(await c.primary()).toBe('A');
    await c.tryOnce('B');
    const env = execFileSync('fw_printenv', ['-c', config], { encoding: 'utf8' });
    expect(env).toContain('BOOT_ORDER=B A');
    expect(env).toContain('BOOT_B_LEFT=1');
    expect(await c.state('B')).toBe('trying');
    expect(await c.primary()).toBe('B');
    // The boot script counts B's boot down; unconfirmed, nothing is left for B.
    execFileSync('fw_setenv', ['-c', config, 'BOOT_B_LEFT', '0']);
    expect(await c.primary()).toBe('A');
    await c.markGood('B', { primary: true });
    expect(execFileSync('fw_printenv', ['-c', config, '-n', `BOOT_B_LEFT`], { encoding: 'utf8' }).trim()).toBe(String(UBOOT_GOOD_TRIES));
    expect(await c.primary()).toBe('B');
  });

  it('a slot marked bad goes last in BOOT_ORDER, so that a probe whose good slot ran out of boots still boots the good one', async () => {
    const { config, c } = await ubootEnvFile('bad-last');
    await c.markGood('B', { primary: true });
    // A new system tried in A: first in the order, one boot; it never comes up (the script counted it to 0).
    await c.tryOnce('A');
    execFileSync('fw_setenv', ['-c', config, 'BOOT_A_LEFT', '0']);
    // The agent, back on B, marks A bad: A goes last, whatever the boots left.
    await c.markBad('A');
    expect(execFileSync('fw_printenv', ['-c', config, '-n', 'BOOT_ORDER'], { encoding: 'utf8' }).trim()).toBe('B A');
    expect(await c.primary()).toBe('B');
  });
});

describe('the slot file (etc/slots.json) is strict', () => {
  const good = {
    bootloader: { type: 'grub', env: '/boot/grub/grubenv' },
    slots: [
      { name: 'a', type: 'block', device: '/dev/vda2', bootname: 'A' },
      { name: 'b', type: 'block', device: '/dev/vda3', bootname: 'B' },
    ],
    pair: ['a', 'b'],
  };
  const bad = (patch: Record<string, unknown>): string => {
    try {
      parseSlotFile(JSON.stringify({ ...good, ...patch }), 'slots.json');
      return 'accepted';
    } catch (e) {
      return `${(e as { code: string }).code}: ${(e as Error).message}`;
    }
  };

  it('accepts a block pair with a bootloader and fills the defaults', () => {
    const f = parseSlotFile(JSON.stringify(good), 'slots.json');
    expect(f).toMatchObject({ bootedFrom: '/proc/cmdline', bootedRoot: '/', releaseDir: '/opt/sonde/release', rebootCommand: ['reboot'] });
  });

  it.each([
    ['an unknown key', { colour: 'red' }, /unknown key colour/],
    ['a relative device', { slots: [{ ...good.slots[0], device: 'vda2' }, good.slots[1]] }, /absolute path/],
    ['one device for both slots', { slots: [good.slots[0], { ...good.slots[1], device: '/dev/vda2' }] }, /two slots on one device/],
    ['one bootname for both slots', { slots: [good.slots[0], { ...good.slots[1], bootname: 'A' }] }, /one bootname/],
    ['a slot named twice', { slots: [good.slots[0], { ...good.slots[1], name: 'a' }] }, /named twice/],
    ['block slots without a bootloader', { bootloader: undefined }, /need a bootloader/],
    ['a pair that is not a/b', { pair: ['a', 'c'] }, /pair/],
    ['a dir slot beside a block slot', { slots: [good.slots[0], { name: 'b', type: 'dir' }] }, /same type/],
    ['a bootname grub could not name', { slots: [{ ...good.slots[0], bootname: 'A B' }, good.slots[1]] }, /bootname|letters/],
  ])('refuses %s with SLOT_CONFIG_INVALID', (_what, patch, message) => {
    const r = bad(patch);
    expect(r).toMatch(/^SLOT_CONFIG_INVALID/);
    expect(r).toMatch(message);
  });

  it('refuses a file that is not JSON', () => {
    expect(() => parseSlotFile('{', 'slots.json')).toThrow(/not JSON/);
  });
});
