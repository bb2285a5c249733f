import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tryPidLock } from '../../base/src/os/pid-lock.js';
import { buildOnce } from '../../images/src/lab/probe-image.js';
import { pruneImages, recordImages } from '../../lxc/src/lab-prune.js';
import { labPaths, writeLabState, type LabState } from '../../lxc/src/lab-state.js';

/**
 * `sonde lab prune` (lxc/src/lab-prune.ts): earlier builds' images go, what a lab was made from
 * and what something used lately stay. Plain folders in a lab home of the test's own.
 */
const HOUR = 3_600_000;
let home: string;

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'sonde-prune-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function image(name: string, ageMs: number, bytes = 4096): Promise<string> {
  const dir = join(home, 'images', name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'payload'), Buffer.alloc(bytes, 1));
  const t = new Date(Date.now() - ageMs);
  await utimes(dir, t, t);
  return dir;
}

async function lab(name: string, images: string[] | undefined, probes = 1): Promise<void> {
  const state: LabState = {
    format: 'sonde-lab-1',
    name,
    backend: 'lxc',
    net: { bridge: `slb-${name}`, octet: 7, hostIp: '10.213.7.1' },
    server: null,
    probes: Array.from({ length: probes }, (_, i) => ({ name: `${name}-0${i + 1}`, index: i + 1, ip: `10.213.7.${11 + i}`, veth: `slv${i}`, line: 'stable', version: '1.1.0', createdAt: new Date().toISOString() })),
    ...(images ? { images } : {}),
  };
  await writeLabState(labPaths(name, home), state);
}

const left = async (): Promise<string[]> => (await readdir(join(home, 'images'))).sort();

describe('sonde lab prune', () => {
  it("removes an earlier build's images that no lab uses and nothing used lately, and keeps what a lab was made from", async () => {
    await image('samples-2', 5 * HOUR);
    await image('agent-deb-old', 5 * HOUR, 1 << 20);
    await image('agent-deb-new', 5 * HOUR);
    await image('lxc-stable-new', 5 * HOUR);
    await image('vm-old', 5 * HOUR, 1 << 20);
    await lab('one', ['agent-deb-new', 'lxc-stable-new', 'samples-2']);
    const out = await pruneImages(home, { keepMs: HOUR });
    expect(await left()).toEqual(['agent-deb-new', 'lxc-stable-new', 'samples-2']);
    expect(out.filter((e) => e.action === 'removed').map((e) => e.name)).toEqual(['agent-deb-old', 'vm-old']);
    expect(out.find((e) => e.name === 'agent-deb-new')).toMatchObject({ action: 'kept', why: 'a lab uses it' });
    expect(out.find((e) => e.name === 'vm-old')!.bytes).toBeGreaterThanOrEqual(1 << 20);
  });

  it('keeps what was used more recently than --keep (a bench or test running from the same home)', async () => {
    await image('vm-recent', 10 * 60_000);
    await image('vm-stale', 3 * HOUR);
    const out = await pruneImages(home, { keepMs: HOUR });
    expect(await left()).toEqual(['vm-recent']);
    expect(out.find((e) => e.name === 'vm-recent')).toMatchObject({ action: 'kept', why: 'used 10 min ago' });
  });

  it('with --dry-run says what would go and removes nothing', async () => {
    await image('vm-stale', 3 * HOUR);
    const out = await pruneImages(home, { keepMs: HOUR, dryRun: true });
    expect(out).toEqual([expect.objectContaining({ name: 'vm-stale', action: 'would remove' })]);
    expect(await left()).toEqual(['vm-stale']);
  });

  it('keeps every image while a lab is busy (a lab up of it may be taking one), and while a lab has no record of its images', async () => {
    await image('vm-stale', 3 * HOUR);
    await lab('busy', ['samples-2']);
    // Another process holds the busy lab's lock, as a `sonde lab up` would.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      await writeFile(labPaths('busy', home).lock, `${holder.pid}\n`);
      const out = await pruneImages(home, { keepMs: 0 });
      expect(out).toEqual([expect.objectContaining({ name: 'vm-stale', action: 'kept', why: `lab busy is busy (process ${holder.pid} holds its lock)` })]);
    } finally {
      holder.kill('SIGKILL');
    }
    await rm(labPaths('busy', home).dir, { recursive: true });
    await lab('older', undefined);
    const out = await pruneImages(home, { keepMs: 0 });
    expect(out).toEqual([expect.objectContaining({ name: 'vm-stale', action: 'kept', why: 'lab older was made before labs recorded their images' })]);
    expect(await left()).toEqual(['vm-stale']);
  });

  it('releases the locks of the labs it held, so the next lab command goes on', async () => {
    await lab('one', ['samples-2']);
    await pruneImages(home, { keepMs: 0 });
    const lock = tryPidLock(labPaths('one', home).lock);
    expect(lock.taken).toBe(true);
    if (lock.taken) lock.release();
    expect(existsSync(join(home, 'prune.lock'))).toBe(false);
  });

  it('removes a half-built folder whose builder died, and keeps one whose builder still runs', async () => {
    await image(`vm-x.tmp-${process.pid}-1`, 3 * HOUR);
    const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    await image(`vm-y.tmp-${dead.pid}-2`, 0);
    const out = await pruneImages(home, { keepMs: HOUR });
    expect(await left()).toEqual([`vm-x.tmp-${process.pid}-1`]);
    expect(out.find((e) => e.name === `vm-y.tmp-${dead.pid}-2`)).toMatchObject({ action: 'removed', why: 'half-built, its builder is gone' });
  });

  it('a lab records the top-level image folders its probes were made from, once each', () => {
    const state = { images: ['samples-2'] } as LabState;
    recordImages(state, '/h/images', ['/h/images/samples-2', '/h/images/agent-deb-1/tree', '/h/images/lxc-stable-1/layer', '/elsewhere/x']);
    expect(state.images).toEqual(['agent-deb-1', 'lxc-stable-1', 'samples-2']);
  });

  it('buildOnce stamps a folder as used each time it hands it out', async () => {
    const dir = await image('agent-deb-1', 5 * HOUR);
    await buildOnce(dir, async () => {
      throw new Error('built already: never called');
    });
    expect(Date.now() - (await stat(dir)).mtimeMs).toBeLessThan(60_000);
  });
});
