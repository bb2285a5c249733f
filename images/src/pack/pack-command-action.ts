import { X509Certificate } from 'node:crypto';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { jsonEnvelope } from '../../../base/src/cli/output.js';
import { progressBar } from '../../../base/src/cli/progress.js';
import { dirname, join } from 'node:path';
import { loadPrivateKey, PackerError, makePlan, PACK_KINDS, readRootRotations, ROTATIONS_DIR, type PackKind, type PlanOverrides, type RootRotation, writePack } from '../../../pack/src/index.js';
import type { PackFlags } from '../cli/pack-command.js';
import { PEM_CERT, readText } from '../keys/input-files.js';

export async function packCommand(src: string, flags: PackFlags): Promise<void> {
  const overrides: PlanOverrides = {};
  if (flags.kind !== undefined) {
    if (!PACK_KINDS.includes(flags.kind as PackKind)) throw new CliError('USAGE', `--kind ${flags.kind}: expected ${PACK_KINDS.join(', ')}`);
    overrides.kind = flags.kind;
  }
  if (flags.product !== undefined) overrides.product = flags.product;
  if (flags.version !== undefined) overrides.version = flags.version;
  if (flags.model !== undefined) overrides.compatible = flags.model;
  if (flags.requires !== undefined) overrides.requires = flags.requires;
  if (flags.securityVersion !== undefined) overrides.securityVersion = flags.securityVersion;
  if (flags.minAgentVersion !== undefined) overrides.minAgentVersion = flags.minAgentVersion;
  if (flags.releaseNotes !== undefined) overrides.releaseNotes = await readText(flags.releaseNotes, 'release notes');
  if (flags.allowDowngrade) overrides.allowDowngrade = true;
  if (flags.downgradeFrom !== undefined) overrides.downgradeFrom = flags.downgradeFrom;
  if (flags.compression !== undefined) {
    if (!['gzip', 'none', 'auto'].includes(flags.compression)) throw new CliError('USAGE', '--compression: expected auto, gzip or none');
    overrides.compression = flags.compression;
  }
  const plan = await makePlan(src, overrides);
  const key = await loadPrivateKey(flags.sign, flags.passphraseFile === undefined ? {} : { passphraseFile: flags.passphraseFile });
  const chainPem = (await readText(flags.cert, 'certificate chain')).match(PEM_CERT) ?? [];
  if (chainPem.length === 0) throw new PackerError('SIGNER_KEY_MISMATCH', `${flags.cert} holds no certificate`);
  const recipients = [];
  for (const path of flags.encryptFor ?? []) {
    const pem = (await readText(path, 'recipient certificate')).match(PEM_CERT)?.[0];
    if (!pem) throw new PackerError('RECIPIENT_CERT_INVALID', `${path} holds no certificate`);
    recipients.push({ cert: new X509Certificate(pem) });
  }
  const rootRotations = await rotationsFor(plan.kind, flags);
  const bar = progressBar();
  const written = await writePack(plan, {
    out: flags.output,
    signer: { key, chainPem },
    recipients,
    rootRotations,
    onProgress: (done, total, stage) => bar.update(done, total, stage),
  });
  bar.done();
  const m = written.manifest;
  if (flags.json) {
    process.stdout.write(`${jsonEnvelope({ path: written.path, size: written.size, sha256: written.sha256, manifest: { ...m, encryption: m.encryption ? { algorithm: m.encryption.algorithm, recipients: m.encryption.recipients.map((r) => ({ label: r.label, keyId: r.keyId })) } : undefined } })}\n`);
    return;
  }
  process.stdout.write(
    `packed ${m.product} ${m.version} (${m.kind}) -> ${written.path}\n` +
      `  ${m.payloads.length} payload(s): ${m.payloads.map((p) => `${p.name} ${p.fileCount} entries ${p.compression}`).join(', ')}\n` +
      (m.rootRotations ? `  carries root rotations ${m.rootRotations.map((r) => r.body.sequence).join(', ')}\n` : '') +
      `  ${m.encryption ? `encrypted for ${m.encryption.recipients.map((r) => r.label).join(', ')}` : 'not encrypted'}\n` +
      `  ${written.size} bytes, sha256 ${written.sha256}\n`,
  );
}

/**
 * A trust pack carries the vendor's root rotation history (docs/keys.md, "Rotating the root"), so
 * that a probe which missed rotations catches up. By default it is the `rotations/` folder beside
 * the signing certificate (the keys directory `sonde keys rotate-root` wrote it to); a folder named
 * with --root-rotations must exist. Other kinds carry none.
 */
async function rotationsFor(kind: string, flags: PackFlags): Promise<RootRotation[]> {
  if (kind !== 'trust') {
    if (flags.rootRotations !== undefined) throw new CliError('USAGE', '--root-rotations is for trust packs (--kind trust)');
    return [];
  }
  if (flags.rootRotations !== undefined) {
    const { stat } = await import('node:fs/promises');
    const isDir = await stat(flags.rootRotations).then((s) => s.isDirectory(), () => false);
    if (!isDir) throw new CliError('INPUT_UNREADABLE', `root rotation folder ${flags.rootRotations} cannot be read`);
    return readRootRotations(flags.rootRotations);
  }
  return readRootRotations(join(dirname(flags.cert), ROTATIONS_DIR));
}
