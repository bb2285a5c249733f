import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { z } from 'zod';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { extractArchive, linkOrCopy, writeArchive } from '../backup/archive.js';
import type { DataPaths } from '../data-dir.js';
import { ServerError } from '../errors.js';
import { PackService } from '../packs/pack-service.js';
import { PackStore, isPackId } from '../packs/pack-store.js';
import type { Store } from '../store/types.js';
import { TRANSFER_SECTIONS, type SectionImport, type TransferSection } from './sections.js';

/**
 * Air-gapped sites (issue 5): `sonde server export` writes chosen packs (and what the transfer
 * sections add, rollout definitions) to one file; `sonde server import` loads it on a
 * customer-hosted server. Imported packs pass the importing server's own door: each is verified
 * against its keyring, and if one is refused nothing is imported.
 */
export const EXPORT_MANIFEST = 'sonde-export.json';

const exportSchema = z
  .object({
    format: z.literal('sonde-export-1'),
    createdAt: z.string(),
    packs: z.array(z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number(), product: z.string(), version: z.string(), kind: z.string() }).strict()),
    sections: z.record(z.string(), z.unknown()),
  })
  .strict();
export type ExportManifest = z.infer<typeof exportSchema>;

export async function exportPacks(
  store: Store,
  paths: DataPaths,
  file: string,
  packs: readonly string[] | 'all',
  sections: readonly TransferSection[] = TRANSFER_SECTIONS,
): Promise<ExportManifest> {
  const records = packs === 'all' ? await store.packs.list() : await Promise.all(packs.map(async (sha) => ({ sha, p: isPackId(sha) ? await store.packs.get(sha) : null }))).then((rs) =>
        rs.map(({ sha, p }) => {
          if (!p) throw new ServerError('PACK_NOT_FOUND', `no pack ${sha}`);
          return p;
        }),
      );
  const staging = join(paths.uploads, `export-${randomBytes(6).toString('hex')}`);
  try {
    for (const p of records) await linkOrCopy(join(paths.packs, `${p.sha256}.spk`), join(staging, 'packs', `${p.sha256}.spk`));
    const shas = records.map((p) => p.sha256);
    const data: Record<string, unknown> = {};
    for (const s of sections) data[s.name] = await s.export(store, shas);
    const manifest: ExportManifest = {
      format: 'sonde-export-1',
      createdAt: new Date().toISOString(),
      packs: records.map((p) => ({ sha256: p.sha256, size: p.size, product: p.summary.product, version: p.summary.version, kind: p.summary.kind })),
      sections: data,
    };
    await mkdir(staging, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(staging, EXPORT_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await mkdir(join(staging, 'packs'), { recursive: true });
    await writeArchive(staging, resolve(file), [EXPORT_MANIFEST, 'packs']);
    return manifest;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

export interface ImportResult {
  readonly packs: readonly { readonly sha256: string; readonly created: boolean }[];
  readonly sections: Readonly<Record<string, SectionImport>>;
}

export async function importPacks(store: Store, paths: DataPaths, file: string, importedBy: string, sections: readonly TransferSection[] = TRANSFER_SECTIONS): Promise<ImportResult> {
  const staging = join(paths.uploads, `import-${randomBytes(6).toString('hex')}`);
  try {
    await extractArchive(resolve(file), staging, (p) => p === EXPORT_MANIFEST || /^packs\/[0-9a-f]{64}\.spk$/.test(p));
    let manifest: ExportManifest;
    try {
      manifest = exportSchema.parse(JSON.parse(await readFile(join(staging, EXPORT_MANIFEST), 'utf8')));
    } catch (e) {
      throw new ServerError('ARCHIVE_INVALID', `${file} is not a Sonde export (${EXPORT_MANIFEST} missing or malformed)`, { cause: e });
    }
    // 1. What the sections carry is judged first: a malformed one refuses the whole file.
    for (const s of sections) if (manifest.sections[s.name] !== undefined) s.check(manifest.sections[s.name]);
    const files = new PackStore(join(staging, 'packs'), join(staging, 'checking'));
    await mkdir(join(staging, 'checking'), { recursive: true });
    const service = new PackService(store, new PackStore(paths.packs, paths.uploads), paths.keyring, pino({ level: 'silent' }), Number.MAX_SAFE_INTEGER);
    // 2. Every pack is checked (bytes, signature, chain, payload hashes) before any is taken.
    for (const p of manifest.packs) {
      const path = files.pathOf(p.sha256);
      let digest: string;
      try {
        digest = await files.digest(path);
      } catch (e) {
        throw new ServerError('ARCHIVE_INVALID', `the export lacks pack ${p.sha256}`, { cause: e });
      }
      if (digest !== p.sha256) throw new ServerError('ARCHIVE_INVALID', `pack ${p.sha256} in the export is damaged`);
      await service.check(path);
    }
    // 3. Then they go through the same door as an upload.
    const packs: { sha256: string; created: boolean }[] = [];
    for (const p of manifest.packs) {
      const r = await service.uploadFile(files.pathOf(p.sha256), importedBy);
      packs.push({ sha256: r.pack.sha256, created: r.created });
    }
    // 4. Then the sections, which may refer to the packs.
    const results: Record<string, SectionImport> = {};
    for (const s of sections) {
      if (manifest.sections[s.name] !== undefined) results[s.name] = await s.import(store, manifest.sections[s.name], importedBy);
    }
    return { packs, sections: results };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
