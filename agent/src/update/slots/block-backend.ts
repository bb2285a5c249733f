import { execFile } from 'node:child_process';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UpdateError } from '../errors.js';
import type { Layout, SlotName } from '../layout.js';
import type { SlotBackend, SlotInfo } from './backend.js';
import { BootChooser, bootEnvOf } from './boot-env.js';
import { mountsOf, deviceFacts } from './block-device.js';
import type { BlockSlotConfig, SlotFile } from './slot-config.js';
import { SlotStatusFile } from './status-file.js';

const run = promisify(execFile);

/**
 * The `block` backend (docs/slots.md): each slot a partition holding a file-system image, the
 * booted one named by `sonde.slot=<bootname>` on the kernel command line, the bootloader's
 * environment deciding what boots next. The booted slot is the active one; activate() only says
 * what the bootloader tries at the next boot, and the switch happens by rebooting.
 */
export class BlockSlotBackend implements SlotBackend {
  readonly kind = 'block';
  readonly rebootsToSwitch = true;
  readonly chooser: BootChooser;
  private readonly status: SlotStatusFile;
  private readonly bySlot: ReadonlyMap<SlotName, BlockSlotConfig>;

  constructor(
    private readonly layout: Layout,
    readonly file: SlotFile,
  ) {
    this.bySlot = new Map(file.slots.filter((s): s is BlockSlotConfig => s.type === 'block').map((s) => [s.name, s] as const));
    this.chooser = new BootChooser(bootEnvOf(file.bootloader!), (['a', 'b'] as const).map((n) => this.slot(n).bootname));
    this.status = new SlotStatusFile(layout.slotStatus);
  }

  slot(name: SlotName): BlockSlotConfig {
    return this.bySlot.get(name)!;
  }

  private byBootname(bootname: string | null | undefined): SlotName | null {
    for (const [name, s] of this.bySlot) if (s.bootname === bootname) return name;
    return null;
  }

  /** The booted slot, from `sonde.slot=` on the kernel command line; null when it names none of the pair. */
  async active(): Promise<SlotName | null> {
    const cmdline = await readFile(this.file.bootedFrom, 'utf8').catch(() => '');
    const m = /(?:^|\s)sonde\.slot=(\S+)/.exec(cmdline);
    return this.byBootname(m?.[1]);
  }

  async primary(): Promise<SlotName | null> {
    return this.byBootname(await this.chooser.primary());
  }

  /** Where the agent mounts an inactive slot to read its release. */
  mountPoint(slot: SlotName): string {
    return join(this.file.mountDir ?? join(this.layout.state, 'mnt'), slot);
  }

  releaseDir(slot: SlotName): string {
    // The booted slot's release is the running root's; any other is read where it is mounted.
    return join(slot === this.booted ? this.file.bootedRoot : this.mountPoint(slot), this.file.releaseDir);
  }

  /** Cached by refresh(): releaseDir() is synchronous. */
  private booted: SlotName | null = null;

  async refresh(): Promise<void> {
    this.booted = await this.active();
  }

  async info(slot: SlotName): Promise<SlotInfo> {
    const s = await this.status.get(slot);
    const c = this.slot(slot);
    const boot = await this.chooser.state(c.bootname).catch(() => undefined);
    return { name: slot, health: s.health, version: s.version, device: c.device, bootname: c.bootname, ...(boot ? { boot } : {}) };
  }

  async markBad(slot: SlotName): Promise<void> {
    // The bootloader first: once nothing will boot it, the slot may be written.
    await this.chooser.markBad(this.slot(slot).bootname);
    await this.status.set(slot, 'bad', null);
  }

  /**
   * The agent is up on `slot` with no install open: the slot boots. The bootloader's try is
   * confirmed (order unchanged), and the agent records the slot good, keeping the release it knows
   * there (none for a factory slot: a release the agent did not commit is not started by it).
   */
  async confirmBooted(slot: SlotName): Promise<void> {
    const info = await this.info(slot);
    // Marked bad by a rollback that now reboots out of it: never confirmed.
    if (info.health === 'bad') return;
    if (info.boot !== 'good') await this.chooser.markGood(this.slot(slot).bootname);
    if (info.health !== 'good') await this.status.set(slot, 'good', info.version);
  }

  async markGood(slot: SlotName, version: string): Promise<void> {
    await this.status.set(slot, 'good', version);
    await this.chooser.markGood(this.slot(slot).bootname, { primary: true });
  }

  /**
   * The next boot: a slot the agent holds good (the previous release, on a rollback) becomes the
   * primary, good; a new one is tried once (an unconfirmed boot is not repeated).
   */
  async activate(slot: SlotName): Promise<void> {
    const booted = await this.active();
    const s = await this.status.get(slot);
    if (slot === booted && s.health === 'good') await this.chooser.markGood(this.slot(slot).bootname, { primary: true });
    else await this.chooser.tryOnce(this.slot(slot).bootname);
  }

  async deactivate(): Promise<void> {
    // A block probe always boots a slot; there is no "no release" to go back to.
  }

  /** Mounts `slot` read-only at its mount point (never the booted one). */
  async mount(slot: SlotName): Promise<string> {
    const where = this.mountPoint(slot);
    const dev = await deviceFacts(this.slot(slot).device);
    if ((await mountsOf(dev)).includes(where)) return where;
    await mkdir(where, { recursive: true });
    try {
      await run('mount', ['-o', 'ro', this.slot(slot).device, where], { timeout: 60_000 });
    } catch (e) {
      throw new UpdateError('SLOT_VERIFY_FAILED', `slot ${slot} (${this.slot(slot).device}) cannot be mounted: ${((e as { stderr?: string }).stderr ?? '').trim() || (e as Error).message}`, { cause: e });
    }
    return where;
  }

  async unmount(slot: SlotName): Promise<void> {
    const where = this.mountPoint(slot);
    const dev = await deviceFacts(this.slot(slot).device).catch(() => null);
    if (dev && (await mountsOf(dev)).includes(where)) await run('umount', [where], { timeout: 60_000 });
    await rmdir(where).catch(() => undefined);
  }
}
