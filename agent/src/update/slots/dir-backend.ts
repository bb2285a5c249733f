import { readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { fsyncDir, writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import type { Layout, SlotName } from '../layout.js';
import type { SlotBackend, SlotHealth, SlotInfo } from './backend.js';

/**
 * The `dir` backend: `<root>/slots/{a,b}`, `<root>/current` a symlink to the active one, switched
 * by rename(2) of a new symlink over it, so a power cut leaves either the old or the new pointer.
 * Slot health lives in `<root>/slots/status.json`, written atomically.
 */
const statusSchema = z.record(
  z.enum(['a', 'b']),
  z.object({ health: z.enum(['good', 'bad', 'empty']), version: z.string().nullable() }).strict(),
);
type Status = z.infer<typeof statusSchema>;

export class DirSlotBackend implements SlotBackend {
  constructor(private readonly layout: Layout) {}

  private async status(): Promise<Status> {
    try {
      return statusSchema.parse(JSON.parse(await readFile(this.layout.slotStatus, 'utf8')));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { a: { health: 'empty', version: null }, b: { health: 'empty', version: null } };
      throw e;
    }
  }

  private async setStatus(slot: SlotName, health: SlotHealth, version: string | null): Promise<void> {
    const s = await this.status();
    s[slot] = { health, version };
    await writeFileAtomic(this.layout.slotStatus, `${JSON.stringify(s, null, 2)}\n`);
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

  async info(slot: SlotName): Promise<SlotInfo> {
    const s = (await this.status())[slot] ?? { health: 'empty' as const, version: null };
    return { name: slot, health: s.health, version: s.version };
  }

  async markBad(slot: SlotName): Promise<void> {
    await this.setStatus(slot, 'bad', null);
  }

  async markGood(slot: SlotName, version: string): Promise<void> {
    await this.setStatus(slot, 'good', version);
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
