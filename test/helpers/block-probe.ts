import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Loop devices and mounts for the block-slot tests (test/slots/): every device and mount made
 * here is recorded and released by `release()`, by name (never another test's).
 */
export class LoopBench {
  private readonly loops: string[] = [];
  private readonly mounts: string[] = [];

  /** A zero-filled file of `bytes`, attached as a loop device. */
  async attach(file: string, bytes: number): Promise<string> {
    await run('truncate', ['-s', String(bytes), file]);
    const dev = (await run('losetup', ['-f', '--show', file])).stdout.trim();
    this.loops.push(dev);
    return dev;
  }

  async mount(dev: string, at: string, ro = true): Promise<void> {
    await mkdir(at, { recursive: true });
    await run('mount', [...(ro ? ['-o', 'ro'] : []), dev, at]);
    this.mounts.push(at);
  }

  async umount(at: string): Promise<void> {
    await run('umount', [at]);
    this.mounts.splice(this.mounts.indexOf(at), 1);
  }

  async release(): Promise<void> {
    for (const m of this.mounts.reverse()) await run('umount', ['-l', m]).catch(() => undefined);
    for (const l of this.loops) await run('losetup', ['-d', l]).catch(() => undefined);
  }
}

export async function grubEnv(file: string): Promise<Record<string, string>> {
  const out = (await run('grub-editenv', [file, 'list'])).stdout;
  return Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/**
 * What the documented grub.cfg does at a boot (docs/slots.md), for tests on the host that cannot
 * boot: the first slot in ORDER with OK=1 and TRY=0 is booted, its TRY set to 1 first; none left:
 * every OK slot's TRY is reset and the first OK one boots. The QEMU tests boot the real grub.cfg.
 */
export async function grubChoose(envFile: string, names: readonly string[]): Promise<string> {
  const env = await grubEnv(envFile);
  const order = (env.ORDER ?? '').split(' ').filter((n) => names.includes(n));
  let pick = order.find((n) => env[`${n}_OK`] === '1' && env[`${n}_TRY`] !== '1');
  if (!pick) {
    const ok = order.filter((n) => env[`${n}_OK`] === '1');
    await run('grub-editenv', [envFile, 'set', ...ok.map((n) => `${n}_TRY=0`)]);
    pick = ok[0] ?? order[0]!;
  }
  await run('grub-editenv', [envFile, 'set', `${pick}_TRY=1`]);
  return pick;
}

/** The kernel command line and boot id a boot into `bootname` leaves (the slot file's bootedFrom / bootIdFrom). */
export async function writeBootFacts(dir: string, bootname: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cmdline'), `console=ttyS0 root=/dev/vda2 sonde.slot=${bootname}\n`);
  await writeFile(join(dir, 'boot_id'), `${randomUUID()}\n`);
}
