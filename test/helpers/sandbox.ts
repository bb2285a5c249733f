import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';

/**
 * Where a hostile pack is extracted: `<root>/staging/` is the extraction target, and
 * `<root>/sentinel/` is what hostile links and absolute paths aim at. Anything a pack manages to
 * write outside staging lands in `<root>` or in the sentinel, where the snapshot taken before the
 * attempt sees it: the sandbox is compared entry by entry (type, size, content, link count,
 * mode), and the sentinel folders by modification time too, so a file created there and removed
 * again is caught as well.
 */
export interface Sandbox {
  readonly root: string;
  readonly staging: string;
  readonly sentinel: string;
  /** The sentinel file that hostile hardlinks and symlinks target. */
  readonly secret: string;
  readonly before: Readonly<Record<string, string>>;
}

export async function makeSandbox(parent: string, name: string, opts: { createStaging?: boolean } = {}): Promise<Sandbox> {
  const root = join(parent, name);
  const sentinel = join(root, 'sentinel');
  await mkdir(join(sentinel, 'nested'), { recursive: true });
  const secret = join(sentinel, 'secret.txt');
  await writeFile(secret, 'nothing from a pack may touch this\n', { mode: 0o600 });
  if (opts.createStaging ?? true) await mkdir(join(root, 'staging'));
  return { root, staging: join(root, 'staging'), sentinel, secret, before: await snapshotOutsideStaging(root) };
}

/** Every path under the sandbox except the staging folder, with what it is. */
export async function snapshotOutsideStaging(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (r === 'staging') continue;
      const abs = join(root, r);
      const info = await lstat(abs);
      if (info.isSymbolicLink()) out[r] = `link -> ${await readlink(abs)}`;
      else if (info.isDirectory()) {
        out[r] = `dir ${(info.mode & 0o7777).toString(8)} mtime ${info.mtimeMs}`;
        await walk(r);
      } else if (info.isFile()) {
        const sha = createHash('sha256').update(await readFile(abs)).digest('hex');
        out[r] = `file ${(info.mode & 0o7777).toString(8)} ${info.size} bytes, ${info.nlink} link(s), sha256 ${sha}`;
      } else out[r] = `special ${info.mode.toString(8)}`;
    }
  }
  await walk('');
  return out;
}

/** Nothing outside staging changed since the sandbox was made. */
export async function expectNothingEscaped(box: Sandbox): Promise<void> {
  expect(await snapshotOutsideStaging(box.root)).toEqual(box.before);
}

/** After a refusal: staging holds nothing (it is gone, or empty as it was given). */
export async function expectStagingClean(box: Sandbox): Promise<void> {
  const left = await readdir(box.staging).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  expect(left, `staging ${box.staging} should be empty after a refusal`).toEqual([]);
}

/** The whole promise of a refusal: nothing outside staging, nothing left inside it. */
export async function expectRefusedCleanly(box: Sandbox): Promise<void> {
  await expectNothingEscaped(box);
  await expectStagingClean(box);
}
