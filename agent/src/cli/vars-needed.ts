import { printJson } from '../../../base/src/cli/output.js';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exists } from '../../../base/src/fs/exists.js';
import { extractPack, loadKeyring, loadPrivateKey, readPack, verifyPack } from '../../../pack/src/index.js';
import { resolveAgentPaths } from '../update/agent-paths.js';
import { UpdateError } from '../update/errors.js';
import { layoutOf } from '../update/layout.js';
import { pickRecipientKey, storedRecipientKeys } from '../update/probe-keys.js';
import { referencedVars, siteVarNames } from '../update/site-vars.js';
import type { AgentFlags } from './agent-command.js';

/**
 * `sonde agent vars needed PACK`: the site variables the pack's config refers to (`#{Name}` in
 * config.template.json and ops/*.json), and which of them this probe has not set, so an operator
 * can enter them before the install rather than after a SITE_VARS_MISSING. The pack is verified
 * first (the probe's keyring, or --keyring) and only its config payload is extracted, into a
 * scratch folder that is removed. Names only: no value is ever read or shown.
 */
export async function varsNeededAction(packPath: string, flags: AgentFlags & { keyring?: string; key?: string; passphraseFile?: string }): Promise<number> {
  const where = resolveAgentPaths(flags);
  const layout = layoutOf(where.root, where.state);
  const keyringPath = flags.keyring ?? layout.keyring;
  if (!flags.keyring && !(await exists(layout.keyring))) {
    throw new UpdateError('PROBE_NOT_INITIALISED', `the probe at ${where.root} has no keyring to verify the pack with; give one with --keyring`);
  }
  const pack = await verifyPack(await readPack(packPath), await loadKeyring(keyringPath));
  const candidates = flags.key ? [await loadPrivateKey(flags.key, flags.passphraseFile ? { passphraseFile: flags.passphraseFile } : {})] : await storedRecipientKeys(layout);
  const key = pack.manifest.encryption ? pickRecipientKey(pack.manifest, candidates) : undefined;
  const scratch = await mkdtemp(join(tmpdir(), 'sonde-vars-needed-'));
  let names: string[];
  try {
    const staging = join(scratch, 'payloads');
    const result = await extractPack(pack, { mode: 'extract', staging, only: ['config'], ...(key ? { key } : {}) });
    const found = new Set<string>();
    for (const p of result.payloads) {
      if (p.dir === null) continue;
      for (const file of await configFiles(p.dir)) {
        let json: unknown;
        try {
          json = JSON.parse(await readFile(file, 'utf8'));
        } catch {
          continue; // the install reports a malformed config payload with its own code
        }
        for (const n of referencedVars(json)) found.add(n);
      }
    }
    names = [...found].sort();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const set = new Set(await siteVarNames(layout.siteVars));
  const missing = names.filter((n) => !set.has(n));
  if (flags.json) {
    printJson({ names, missing });
  } else if (names.length === 0) {
    process.stdout.write(`${pack.manifest.product} ${pack.manifest.version} needs no site variable\n`);
  } else {
    process.stdout.write(`${pack.manifest.product} ${pack.manifest.version} needs:\n${names.map((n) => `  ${n.padEnd(24)} ${set.has(n) ? 'set' : 'MISSING (sonde agent vars set ' + n + ')'}`).join('\n')}\n`);
  }
  return 0;
}

/** config.template.json and ops/*.json of an extracted config payload. */
async function configFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  if (await exists(join(dir, 'config.template.json'))) files.push(join(dir, 'config.template.json'));
  const ops = await readdir(join(dir, 'ops')).catch(() => [] as string[]);
  for (const n of ops.filter((x) => x.endsWith('.json')).sort()) files.push(join(dir, 'ops', n));
  return files;
}
