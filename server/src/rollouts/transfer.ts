import { z } from 'zod';
import { ServerError } from '../errors.js';
import type { SectionImport, TransferSection } from '../transfer/sections.js';
import { rolloutCreateBody, type RolloutDefinition } from './definition.js';
import { draftRollout } from './draft.js';
import type { RolloutRecord } from './rollout-repository.js';

/**
 * Rollout definitions in an export (`sonde server export`, docs/server.md "Air-gapped sites"):
 * every rollout of an exported pack, as the definition it was created from (name, pack,
 * environment, target, strategy, windows) and its id on the exporting server. An import creates
 * each one as a draft on the site's server through the same door as `POST /api/v1/rollouts`
 * (pack, promotion gate, target and plan judged against the site's own probes and history); a
 * site operator starts it. A definition the site cannot plan (its target names no probe there,
 * the gate is closed) is left out with its code. Importing the same file again creates nothing:
 * each origin id is remembered.
 */
const definition = rolloutCreateBody.omit({ draft: true });
const entrySchema = z.object({ origin: z.string().regex(/^ro-[0-9a-f]{12}$/), definition }).strict();
const sectionSchema = z.array(entrySchema).max(10_000);
type Entry = z.input<typeof entrySchema>;

/** The settings key that records which local draft an exported rollout became. */
export const originKey = (origin: string): string => `rollout-import:${origin}`;

const EXPORT_PAGE = 10_000;

function definitionOf(r: RolloutRecord): Omit<RolloutDefinition, 'draft'> {
  return {
    ...(r.name === null ? {} : { name: r.name }),
    packSha256: r.packSha256,
    ...(r.environment === null ? {} : { environment: r.environment }),
    target: r.target,
    strategy: r.strategy,
    windows: [...r.windows],
    ...(r.download === null ? {} : { download: r.download }),
    ...(r.agentFirst === null ? {} : { agentPackSha256: r.agentFirst.packSha256 }),
  };
}

export const rolloutTransfer: TransferSection = {
  name: 'rollouts',

  async export(store, packs) {
    const out: Entry[] = [];
    for (const sha of packs) {
      const rs = await store.rollouts.list({ packSha256: sha, limit: EXPORT_PAGE });
      for (const r of rs.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))) out.push({ origin: r.id, definition: definitionOf(r) });
    }
    return out;
  },

  check(data) {
    const r = sectionSchema.safeParse(data);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new ServerError('ARCHIVE_INVALID', `the export's rollout definitions are malformed (rollouts.${i.path.join('.')}: ${i.message})`);
    }
  },

  async import(store, data, importedBy): Promise<SectionImport> {
    const entries = sectionSchema.parse(data);
    let imported = 0;
    const notes: string[] = [];
    for (const e of entries) {
      if ((await store.settings.get(originKey(e.origin))) !== null) continue;
      try {
        const { record } = await draftRollout(store, { ...e.definition, draft: true }, { actor: 'import', actorName: importedBy }, new Date().toISOString());
        await store.settings.set(originKey(e.origin), record.id);
        notes.push(`${e.origin} -> draft ${record.id}${record.name ? ` (${record.name})` : ''}: start it with sonde rollout start ${record.id}`);
        imported += 1;
      } catch (err) {
        if (!(err instanceof ServerError)) throw err;
        notes.push(`${e.origin}${e.definition.name ? ` (${e.definition.name})` : ''} not imported: ${err.code}: ${err.message}`);
      }
    }
    return { imported, notes };
  },
};
