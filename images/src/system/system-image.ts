import { execFile } from 'node:child_process';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Recipe } from '../../../pack/src/index.js';
import { baseRecipe, probeAppSource } from '../samples/recipes.js';
import { APP_ENTRY, SAMPLE_RELEASES, releaseJsonOf, type SampleReleaseVersion } from '../samples/releases.js';

const run = promisify(execFile);

/**
 * System images (docs/slots.md): a file-system image for a block slot, with the release's tree at
 * RELEASE_DIR inside it (app/, db/migrations/, config/, hooks/). Built with `mkfs.ext4 -d`, which
 * fills the file system from a folder without mounting anything (e2fsprogs, Debian), or with
 * `mksquashfs` (squashfs-tools). The agent writes either the same way: it is bytes for a device,
 * mounted read-only by the kernel's own detection of the type.
 */
export const RELEASE_DIR = '/opt/sonde/release';

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * The sample release `version` as a whole system release: its app, and every database migration
 * and config op of the releases up to it (an image replaces the slot whole, so it carries the full
 * history; the engine skips what the probe's database and config already have).
 */
export async function writeSampleReleaseTree(tree: string, version: SampleReleaseVersion): Promise<void> {
  const upTo = SAMPLE_RELEASES.findIndex((r) => r.version === version);
  if (upTo < 0) throw new Error(`no sample release ${version}`);
  const chain = SAMPLE_RELEASES.slice(0, upTo + 1).filter((r, i) => i === upTo || !r.version.includes('-'));
  const withApp = [...chain].reverse().find((r) => r.app !== undefined)!;
  const dir = join(tree, RELEASE_DIR);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'app'), { recursive: true });
  await copyFile(await probeAppSource(), join(dir, 'app', APP_ENTRY));
  await writeJson(join(dir, 'app', 'release.json'), { ...releaseJsonOf(withApp, 'process'), version });
  await mkdir(join(dir, 'db', 'migrations'), { recursive: true });
  await mkdir(join(dir, 'config', 'ops'), { recursive: true });
  for (const r of chain) {
    for (const m of r.migrations) {
      await writeFile(join(dir, 'db', 'migrations', `${m.name}.up.sql`), m.up);
      await writeFile(join(dir, 'db', 'migrations', `${m.name}.down.sql`), m.down);
    }
    if (r.configTemplate) await writeJson(join(dir, 'config', 'config.template.json'), r.configTemplate);
    for (const f of r.configOps) await writeJson(join(dir, 'config', 'ops', `${f.name}.json`), f.ops);
    for (const [name, content] of Object.entries(r.data ?? {})) await writeJson(join(dir, 'data', name), content);
  }
}

/** An ext4 image of `tree`, `bytes` large (a multiple of 1 MiB), without a journal: a slot is written whole and mounted read-only. */
export async function buildExt4Image(tree: string, out: string, bytes: number, label = 'sonde-root'): Promise<void> {
  await rm(out, { force: true });
  await run('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-L', label, '-E', 'root_owner=0:0', '-d', tree, out, `${Math.ceil(bytes / 1024)}k`], { timeout: 300_000 });
}

/**
 * A squashfs image of `tree` (compressed, read-only by nature: what most A/B products ship), every
 * file owned by root, no extended attributes, the file system's time fixed so that the same tree
 * makes the same bytes. Its size is what it holds, rounded to 4 KiB (`mksquashfs`, squashfs-tools).
 */
export async function buildSquashfsImage(tree: string, out: string): Promise<void> {
  await rm(out, { force: true });
  await run('mksquashfs', [tree, out, '-noappend', '-quiet', '-comp', 'gzip', '-all-root', '-no-xattrs', '-mkfs-time', '0', '-all-time', '0', '-no-progress'], { timeout: 300_000 });
}

/** A recipe folder for a system pack: pack.json and the image (`sonde pack <dir>`). */
export async function writeSystemRecipe(dir: string, image: string, version: string, releaseNotes = `System image ${version}`): Promise<string> {
  await mkdir(dir, { recursive: true });
  await copyFile(image, join(dir, 'rootfs.img'));
  const recipe: Recipe = { ...baseRecipe('product', version, releaseNotes), payloads: { system: 'rootfs.img' } };
  await writeJson(join(dir, 'pack.json'), recipe);
  return dir;
}
