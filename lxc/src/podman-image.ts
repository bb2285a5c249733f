import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { LabError } from './errors.js';

/**
 * The image a lab's podman probes start from: the shared base layer, imported into the lab's
 * engine (no registry is reachable) and tagged by a hash of its content, so a lab imports it once
 * and a changed base gets a new tag. It is the lower layer of each probe's root file system; the
 * probe's own `upper` is the container's layer (podman-backend.ts).
 */
export const IMAGE_REPO = 'localhost/sonde-probe-base';

export async function ensureBaseImage(docker: Dockerode, lower: string): Promise<string> {
  const ref = `${IMAGE_REPO}:${await contentHash(lower)}`;
  try {
    await docker.getImage(ref).inspect();
    return ref;
  } catch {
    // not imported yet
  }
  const tar = spawn('tar', ['-C', lower, '--numeric-owner', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tarErr = '';
  tar.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
  try {
    // podman's compat import takes the tag inside `repo` (a separate `tag` is ignored).
    const progress = await docker.importImage(tar.stdout, { repo: ref });
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(progress, (err: Error | null) => (err ? reject(err) : resolve())));
    await docker.getImage(ref).inspect();
  } catch (e) {
    throw new LabError('LAB_PROBE_FAILED', `podman: importing ${lower} as ${ref}: ${(e as Error).message}${tarErr ? ` (tar: ${tarErr.trim()})` : ''}`, { cause: e });
  }
  return ref;
}

/** A hash of a folder's content (names, types, modes, owners, bytes, link targets), not its times. */
export async function contentHash(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const s = await lstat(p);
      hash.update(`${rel}/${name}\0${s.mode}\0${s.uid}\0${s.gid}\0`);
      if (s.isSymbolicLink()) hash.update(`->${await readlink(p)}\n`);
      else if (s.isDirectory()) await walk(p, `${rel}/${name}`);
      else if (s.isFile()) hash.update(await readFile(p)).update('\n');
      else hash.update(`dev ${s.rdev}\n`);
    }
  };
  await walk(dir, '');
  return hash.digest('hex').slice(0, 16);
}
