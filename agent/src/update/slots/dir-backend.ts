import { readlink, rename, rm, symlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDir } from '../../../../base/src/fs/atomic.js';
import { slotDir, type Layout, type SlotName } from '../layout.js';
import type { SlotBackend, SlotInfo } from './backend.js';
import { SlotStatusFile } from './status-file.js';

/**
 * The `dir` backend: `<root>/slots/{a,b}`, `<root>/current` a symlink to the active one, switched
 * by rename(2) of a new symlink over it, so a power cut leaves either the old or the new pointer.
 * Slot health lives in `<root>/slots/status.json`, written atomically.
 */
export class DirSlotBackend implements SlotBackend {
  readonly kind = 'dir';
  readonly rebootsToSwitch = false;
  private readonly status: SlotStatusFile;
  constructor(private readonly layout: Layout) {
    this.status = new SlotStatusFile(layout.slotStatus);
  }

  async active(): Promise<SlotName | null> {
    try {
      const target = await readlink(this.layout.current);
      const name = basename(target);
      return name === 'a' || name === 'b' ? name : null;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async primary(): Promise<SlotName | null> {
    return this.active();
  }

  releaseDir(slot: SlotName): string {
    return slotDir(this.layout, slot);
  }

  async info(slot: SlotName): Promise<SlotInfo> {
    const s = await this.status.get(slot);
    return { name: slot, health: s.health, version: s.version };
  }

  async markBad(slot: SlotName): Promise<void> {
    await this.status.set(slot, 'bad', null);
  }

  async markGood(slot: SlotName, version: string): Promise<void> {
    await this.status.set(slot, 'good', version);
  }

  async activate(slot: SlotName): Promise<void> {
    const link = this.layout.current;
    const tmp = join(dirname(link), `.current.${randomBytes(4).toString('hex')}`);
    await symlink(join('slots', slot), tmp);
    await rename(tmp, link);
    await fsyncDir(dirname(link));
  }

  async deactivate(): Promise<void> {
    await rm(this.layout.current, { force: true });
    await fsyncDir(dirname(this.layout.current));
  }
}
