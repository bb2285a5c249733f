import { createHash } from 'node:crypto';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildOnce, treeFingerprint } from '../../images/src/lab/probe-image.js';
import { LabError } from './errors.js';
import { run } from './host.js';

/**
 * The agent as a customer installs it, for the lab's probes (issue 21): the sonde-agent Debian
 * package that `scripts/build-deb` makes from this checkout's build, its /usr/lib/sonde extracted
 * (`dpkg-deb -x`) once per build into the images folder. Every probe and every layer builder
 * mounts that tree read-only at /opt/sonde, as the package's /usr/lib/sonde is read-only on a probe;
 * so the lab runs the production node_modules the package ships, not the checkout's.
 */
export async function ensureAgentTree(repoDir: string, imagesDir: string, log: (l: string) => void): Promise<string> {
  const hash = createHash('sha256');
  hash.update(treeFingerprint(join(repoDir, 'dist')));
  for (const f of ['package-lock.json', 'scripts/build-deb']) hash.update(await readFile(join(repoDir, f)));
  hash.update(treeFingerprint(join(repoDir, 'packaging')));
  const dir = join(imagesDir, `agent-deb-${hash.digest('hex').slice(0, 16)}`);
  await buildOnce(dir, async (tmp) => {
    const t0 = Date.now();
    log('building the sonde-agent package the probes run (scripts/build-deb), once per agent build');
    await run(join(repoDir, 'scripts', 'build-deb'), ['--no-build', '--out', join(tmp, 'deb')], { code: 'LAB_IMAGE_FAILED', timeoutMs: 600_000 });
    const deb = (await readdir(join(tmp, 'deb'))).find((f) => f.startsWith('sonde-agent_') && f.endsWith('.deb'));
    if (!deb) throw new LabError('LAB_IMAGE_FAILED', 'scripts/build-deb made no sonde-agent package');
    await run('dpkg-deb', ['-x', join(tmp, 'deb', deb), join(tmp, 'x')], { code: 'LAB_IMAGE_FAILED' });
    await rename(join(tmp, 'x', 'usr', 'lib', 'sonde'), join(tmp, 'tree'));
    await rename(join(tmp, 'deb', deb), join(tmp, deb));
    await rm(join(tmp, 'x'), { recursive: true, force: true });
    await rm(join(tmp, 'deb'), { recursive: true, force: true });
    log(`built the agent package ${deb} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  return join(dir, 'tree');
}
