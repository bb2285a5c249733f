import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { readStatus } from '../../agent/src/update/status.js';
import { makeSampleKeys, packSampleRecipe, type SampleKeys } from '../../images/src/samples/index.js';
import type { SampleReleaseVersion } from '../../images/src/samples/releases.js';
import { buildExt4Image, buildSquashfsImage, writeSampleReleaseTree, writeSystemRecipe } from '../../images/src/system/system-image.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import { entryNamed, flipped, layoutOf as packLayout } from '../helpers/pack-layout.js';
import { grubChoose, grubEnv, LoopBench, writeBootFacts } from '../helpers/block-probe.js';
import { scratch } from '../helpers/packs.js';
import { dbDigest, FAST_HEALTH, httpJson, stopApp, waitFor } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * System images on block slots, on the host (root: loop devices, ext4 images, mounts, the real
 * grub-editenv): the engine writes the image into the inactive slot's device, reads it back,
 * asks GRUB's environment to try it once, and judges the boot that follows. The boot itself is
 * the documented grub.cfg's choice (test/helpers/block-probe.ts: a host cannot boot); the QEMU
 * tests boot the real one. CI runs as root; elsewhere these tests are skipped.
 */
// Skipped on a developer machine without root; under CI=true they run, and fail without it.
const ROOT = process.getuid?.() === 0 || process.env.CI === 'true';
const SLOT_BYTES = 24 * 1024 * 1024;
const IMAGE_BYTES = 16 * 1024 * 1024;
const NAMES = ['A', 'B'] as const;

let tmp: { dir: string; cleanup: () => Promise<void> };
let loops: LoopBench;
let keys: SampleKeys;
let root: string;
let port: number;
const dev: Record<'a' | 'b', string> = { a: '', b: '' };
const packs: Partial<Record<SampleReleaseVersion, string>> = {};
let sysroot: string;
let bootDir: string;
let envFile: string;
let createdAt = Date.now();

async function systemPack(version: SampleReleaseVersion, fs: 'ext4' | 'squashfs' = 'ext4'): Promise<string> {
  const tree = join(tmp.dir, `tree-${version}-${fs}`);
  await writeSampleReleaseTree(tree, version);
  const image = join(tmp.dir, `rootfs-${version}${fs === 'ext4' ? '' : `.${fs}`}.img`);
  if (fs === 'ext4') await buildExt4Image(tree, image, IMAGE_BYTES);
  else await buildSquashfsImage(tree, image);
  const out = join(tmp.dir, `system-${version}${fs === 'ext4' ? '' : `-${fs}`}.spk`);
  createdAt = Math.max(Date.now(), createdAt + 1);
  await packSampleRecipe(await writeSystemRecipe(join(tmp.dir, `recipe-${version}`), image, version), out, keys, new Date(createdAt));
  return out;
}

async function engine(): Promise<Engine> {
  return Engine.open({ root, keyring: keys.rootCert, recipientKey: await loadPrivateKey(keys.fleetKey), health: FAST_HEALTH });
}

async function sha(path: string, bytes = SLOT_BYTES): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    await fh.read(buf, 0, bytes, 0);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    await fh.close();
  }
}

/** The engine's read-only mounts of the slots it wrote (<state>/mnt/a|b), where there are any. */
function umountAgentMounts(): void {
  for (const slot of ['a', 'b']) {
    try {
      execFileSync('umount', ['-l', join(layoutOf(root).state, 'mnt', slot)], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
}

/** A power cycle: everything stops, the agent's mounts go, GRUB picks a slot, it is mounted as the root. */
async function reboot(opts: { comesUp?: boolean } = {}): Promise<string> {
  await stopApp(root).catch(() => undefined);
  await loops.umount(sysroot).catch(() => undefined);
  // The agent's read-only mount of the slot it wrote goes with the reboot too.
  umountAgentMounts();
  const pick = await grubChoose(envFile, NAMES);
  await writeBootFacts(bootDir, pick);
  await loops.mount(pick === 'A' ? dev.a : dev.b, sysroot);
  if (opts.comesUp === false) return reboot();
  return pick;
}

/** The agent starting after a boot: it finishes what the journal left open, then runs the app. */
async function agentStarts(): Promise<void> {
  const e = await engine();
  try {
    await e.recover();
    await e.ensureAppRunning();
  } finally {
    e.close();
  }
}

/**
 * A database's version, schema and reference table: not the measurements and the alarms the
 * running app keeps adding until the install stops it (an alarm raised in between made the
 * comparison fail now and then).
 */
function dbShape(db: string | ReturnType<typeof dbDigest>): unknown {
  const d = typeof db === 'string' ? dbDigest(db) : db;
  return { version: d.version, schema: d.tables['(schema)'], targets: d.tables.targets };
}

async function install(version: SampleReleaseVersion) {
  const e = await engine();
  try {
    return await e.install(packs[version]!);
  } finally {
    e.close();
  }
}

async function status() {
  const e = await Engine.open({ root }, { readOnly: true });
  try {
    return await readStatus(e.context);
  } finally {
    e.close();
  }
}

describe.skipIf(!ROOT)('system images on block slots (loop devices, ext4, grub-editenv)', () => {
  beforeAll(async () => {
    tmp = await scratch('sonde-block-');
    loops = new LoopBench();
    keys = (await makeSampleKeys(join(tmp.dir, 'keys'))).keys;
    for (const v of ['1.0.0', '1.1.0', '1.1.1', '1.2.0-bad'] as const) packs[v] = await systemPack(v);
    dev.a = await loops.attach(join(tmp.dir, 'slot-a.img'), SLOT_BYTES);
    dev.b = await loops.attach(join(tmp.dir, 'slot-b.img'), SLOT_BYTES);
    // The factory: 1.0.0's image flashed into slot A, GRUB told to boot A.
    const factory = join(tmp.dir, 'rootfs-1.0.0.img');
    await writeFile(dev.a, await readFile(factory));
    root = join(tmp.dir, 'probe');
    sysroot = join(tmp.dir, 'sysroot');
    bootDir = join(tmp.dir, 'boot');
    envFile = join(bootDir, 'grubenv');
    await mkdir(join(root, 'etc'), { recursive: true });
    await mkdir(bootDir, { recursive: true });
    execFileSync('grub-editenv', [envFile, 'create']);
    execFileSync('grub-editenv', [envFile, 'set', 'ORDER=A B', 'A_OK=1', 'A_TRY=0', 'B_OK=0', 'B_TRY=0']);
    await writeFile(
      join(root, 'etc', 'slots.json'),
      JSON.stringify({
        bootedFrom: join(bootDir, 'cmdline'),
        bootIdFrom: join(bootDir, 'boot_id'),
        bootedRoot: sysroot,
        rebootCommand: ['true'],
        bootloader: { type: 'grub', env: envFile },
        slots: [
          { name: 'a', type: 'block', device: dev.a, bootname: 'A' },
          { name: 'b', type: 'block', device: dev.b, bootname: 'B' },
        ],
        pair: ['a', 'b'],
      }),
    );
    port = await freePort();
    await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port }));
    await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'block-site-secret');
    expect(await reboot()).toBe('A');
  }, 300_000);

  afterAll(async () => {
    await stopApp(root).catch(() => undefined);
    // The engine's own read-only mounts of a slot (a failed test may leave one), then ours.
    if (root) umountAgentMounts();
    await loops?.release();
    await tmp?.cleanup();
  });

  it('writes a system image into the inactive slot, reboots into it through GRUB, health-checks it and commits', async () => {
    const bootedBefore = await sha(dev.a);
    const r = await install('1.1.0');
    // The install stops at the reboot: B written and read back, GRUB told to try B once.
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.deployment.state).toBe('trial');
    expect(await grubEnv(envFile)).toMatchObject({ ORDER: 'B A', B_OK: '1', B_TRY: '0', A_OK: '1' });
    expect(await sha(dev.a)).toBe(bootedBefore);
    expect(await reboot()).toBe('B');
    await agentStarts();
    const s = await status();
    expect(s.lastOutcome).toMatchObject({ outcome: 'committed', version: '1.1.0' });
    expect(s.slot).toBe('b');
    expect(s.boot).toEqual({ type: 'block', booted: 'b', primary: 'b' });
    expect(s.slots.find((x) => x.name === 'b')).toMatchObject({ health: 'good', version: '1.1.0', boot: 'good', device: dev.b, bootname: 'B' });
    expect(await grubEnv(envFile)).toMatchObject({ ORDER: 'B A', B_OK: '1', B_TRY: '0' });
    const st = await waitFor('1.1.0 serving', async () => (await httpJson(port, '/status')).body as { version: string });
    expect(st.version).toBe('1.1.0');
  }, 180_000);

  it('a system image whose init never comes up is abandoned by the bootloader and recorded as rolled back', async () => {
    const dbBefore = dbDigest(layoutOf(root).db);
    expect(dbBefore.version).toBe(2);
    const configBefore = await readFile(layoutOf(root).config, 'utf8');
    const r = await install('1.1.1');
    expect(r.deployment.state).toBe('trial');
    // A boots once (its TRY set), never reaches the agent, and the next boot skips it.
    expect(await reboot({ comesUp: false })).toBe('B');
    await agentStarts();
    const s = await status();
    expect(s.lastOutcome).toMatchObject({ outcome: 'rolled-back', errorCode: 'SYSTEM_BOOT_FAILED', version: '1.1.1' });
    expect(s.lastOutcome?.reason).toMatch(/never came up/);
    expect(s.slot).toBe('b');
    // The database as the old release left it: its version and schema (the app kept measuring until the install stopped it).
    expect(dbShape(layoutOf(root).db)).toEqual(dbShape(dbBefore));
    expect(await readFile(layoutOf(root).config, 'utf8')).toBe(configBefore);
    expect(await grubEnv(envFile)).toMatchObject({ A_OK: '0', B_OK: '1', B_TRY: '0' });
    const st = await waitFor('1.1.0 serving', async () => (await httpJson(port, '/status')).body as { version: string });
    expect(st.version).toBe('1.1.0');
  }, 180_000);

  it('a system image whose app fails its health gate is rolled back by the agent, with a reboot into the old slot', async () => {
    const dbBefore = dbDigest(layoutOf(root).db);
    expect(dbBefore.version).toBe(2);
    const r = await install('1.2.0-bad');
    expect(r.deployment.state).toBe('trial');
    expect(await reboot()).toBe('A');
    // The agent in A: the app answers 503; the agent puts B first again and asks for the reboot.
    await agentStarts();
    expect(await grubEnv(envFile)).toMatchObject({ ORDER: 'B A', A_OK: '0', B_OK: '1', B_TRY: '0' });
    // Until that reboot, nothing more is written: an install now would target slot B, the one to boot.
    await expect(install('1.1.1')).rejects.toMatchObject({ code: 'INSTALL_LOCKED' });
    expect(await reboot()).toBe('B');
    await agentStarts();
    const s = await status();
    expect(s.lastOutcome).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED', version: '1.2.0-bad' });
    expect(s.slot).toBe('b');
    // The database as the old release left it: its version and schema (the app kept measuring until the install stopped it).
    expect(dbShape(layoutOf(root).db)).toEqual(dbShape(dbBefore));
    const st = await waitFor('1.1.0 serving', async () => (await httpJson(port, '/status')).body as { version: string });
    expect(st.version).toBe('1.1.0');
  }, 180_000);

  it('never writes a mounted slot: an inactive slot someone mounted is refused with SLOT_DEVICE_BUSY, nothing written', async () => {
    const inactive = join(tmp.dir, 'operator-mount');
    await loops.mount(dev.a, inactive);
    const before = await sha(dev.a);
    const envBefore = await grubEnv(envFile);
    try {
      const r = await install('1.1.1');
      expect(r.deployment).toMatchObject({ state: 'failed', errorCode: 'SLOT_DEVICE_BUSY' });
      expect(await sha(dev.a)).toBe(before);
      expect(await grubEnv(envFile)).toEqual(envBefore);
    } finally {
      await loops.umount(inactive);
    }
  }, 120_000);

  it('refuses with SLOT_DEVICE_TOO_SMALL a slot device smaller than the image, nothing written', async () => {
    const small = await loops.attach(join(tmp.dir, 'small.img'), 8 * 1024 * 1024);
    const slotsFile = join(root, 'etc', 'slots.json');
    const original = await readFile(slotsFile, 'utf8');
    await writeFile(slotsFile, original.replace(JSON.stringify(dev.a), JSON.stringify(small)));
    const before = await sha(small, 8 * 1024 * 1024);
    try {
      const r = await install('1.1.1');
      expect(r.deployment).toMatchObject({ state: 'failed', errorCode: 'SLOT_DEVICE_TOO_SMALL' });
      expect(await sha(small, 8 * 1024 * 1024)).toBe(before);
    } finally {
      await writeFile(slotsFile, original);
    }
  }, 120_000);

  it('an attacker on the FTP drop who alters the image gets nothing booted: refused, the slot marked bad, GRUB still boots the old slot', async () => {
    const bytes = await readFile(packs['1.1.1']!);
    const e = entryNamed(packLayout(bytes), 'payloads/01-system');
    const forged = join(tmp.dir, 'forged-1.1.1.spk');
    await writeFile(forged, flipped(bytes, e.data + Math.floor((e.dataEnd - e.data) / 2)));
    const eng = await engine();
    try {
      const r = await eng.install(forged);
      expect(r.deployment.state).toBe('failed');
      expect(['DECRYPT_FAILED', 'PAYLOAD_HASH_MISMATCH']).toContain(r.deployment.errorCode);
    } finally {
      eng.close();
    }
    expect(await grubEnv(envFile)).toMatchObject({ ORDER: 'B A', A_OK: '0', B_OK: '1', B_TRY: '0' });
    expect((await status()).slot).toBe('b');
  }, 120_000);

  it('sonde agent rollback on block slots goes back to the previous release through a reboot into its slot, and commits there', async () => {
    // A second committed release: 1.1.1 into A.
    expect((await install('1.1.1')).deployment.state).toBe('trial');
    expect(await reboot()).toBe('A');
    await agentStarts();
    expect(await status()).toMatchObject({ slot: 'a', version: '1.1.1', lastOutcome: { outcome: 'committed', version: '1.1.1' } });
    const slotB = await sha(dev.b);

    // Back to 1.1.0, still whole in B: GRUB is told to boot B, and the probe reboots.
    const e = await engine();
    let r;
    try {
      r = await e.rollback();
    } finally {
      e.close();
    }
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.deployment.state).toBe('trial');
    expect((await grubEnv(envFile)).ORDER).toBe('B A');
    expect(await reboot()).toBe('B');
    await agentStarts();
    const s = await status();
    expect(s).toMatchObject({ slot: 'b', version: '1.1.0', dbVersion: 2, lastOutcome: { outcome: 'committed', version: '1.1.0' } });
    expect(s.boot).toEqual({ type: 'block', booted: 'b', primary: 'b' });
    // Nothing was written into the slot it went back to.
    expect(await sha(dev.b)).toBe(slotB);
    const st = await waitFor('1.1.0 serving again', async () => (await httpJson(port, '/status')).body as { version: string });
    expect(st.version).toBe('1.1.0');
  }, 180_000);

  it('a squashfs system image installs as an ext4 one does: written into the slot, read back, mounted read-only for its release, booted and committed', async () => {
    const pack = await systemPack('1.1.1', 'squashfs');
    const image = await readFile(join(tmp.dir, 'rootfs-1.1.1.squashfs.img'));
    // squashfs's magic, and an image much smaller than the slot (what a compressed root buys).
    expect(image.subarray(0, 4).toString('latin1')).toBe('hsqs');
    expect(image.length).toBeLessThan(IMAGE_BYTES / 4);
    const e = await engine();
    let r;
    try {
      r = await e.install(pack);
    } finally {
      e.close();
    }
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.deployment.state).toBe('trial');
    // The slot holds the image's bytes, from its first byte (the agent read them back against the signed hash).
    expect(await sha(dev.a, image.length)).toBe(createHash('sha256').update(image).digest('hex'));
    expect(await reboot()).toBe('A');
    expect(execFileSync('findmnt', ['-n', '-o', 'FSTYPE,OPTIONS', sysroot], { encoding: 'utf8' })).toMatch(/^squashfs\s+ro,/);
    await agentStarts();
    const s = await status();
    expect(s).toMatchObject({ slot: 'a', version: '1.1.1', lastOutcome: { outcome: 'committed', version: '1.1.1' } });
    expect(s.boot).toEqual({ type: 'block', booted: 'a', primary: 'a' });
    const st = await waitFor('1.1.1 serving from squashfs', async () => (await httpJson(port, '/status')).body as { version: string });
    expect(st.version).toBe('1.1.1');
  }, 180_000);
});
