import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import type { SlotName } from '../layout.js';
import type { SlotHealth } from './backend.js';

/**
 * `<root>/slots/status.json`: each slot's health and the release written there, as the agent
 * recorded them (written atomically). Both backends keep it: for block slots it is on the data
 * partition, beside the bootloader's own view (boot-env.ts).
 */
const statusSchema = z.record(
  z.enum(['a', 'b']),
  z.object({ health: z.enum(['good', 'bad', 'empty']), version: z.string().nullable() }).strict(),
);
export type SlotStatus = z.infer<typeof statusSchema>;

export class SlotStatusFile {
  constructor(private readonly path: string) {}

  async read(): Promise<SlotStatus> {
    try {
      return statusSchema.parse(JSON.parse(await readFile(this.path, 'utf8')));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { a: { health: 'empty', version: null }, b: { health: 'empty', version: null } };
      throw e;
    }
  }

  async get(slot: SlotName): Promise<{ health: SlotHealth; version: string | null }> {
    return (await this.read())[slot] ?? { health: 'empty', version: null };
  }

  async set(slot: SlotName, health: SlotHealth, version: string | null): Promise<void> {
    const s = await this.read();
    s[slot] = { health, version };
    await writeFileAtomic(this.path, `${JSON.stringify(s, null, 2)}\n`);
  }
}
