import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { progressBar } from '../../../base/src/cli/progress.js';
import { loadPrivateKey, PackerError, makePlan, type PlanOverrides, writePack } from '../../../pack/src/index.js';
import type { PackFlags } from '../cli/pack-command.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError('INPUT_UNREADABLE', `${what} ${path} cannot be read`, { cause: e });
  }
}

export async function packCommand(src: string, flags: PackFlags): Promise<void> {
  const overrides: PlanOverrides = {};
  if (flags.kind !== undefined) {
    if (!['product', 'servicepack', 'license', 'trust'].includes(flags.kind)) throw new CliError('USAGE', `--kind ${flags.kind}: expected product, servicepack, license or trust`);
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
  const bar = progressBar();
  const written = await writePack(plan, {
    out: flags.output,
    signer: { key, chainPem },
    recipients,
    onProgress: (done, total, stage) => bar.update(done, total, stage),
  });
  bar.done();
  const m = written.manifest;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: true, path: written.path, size: written.size, sha256: written.sha256, manifest: { ...m, encryption: m.encryption ? { algorithm: m.encryption.algorithm, recipients: m.encryption.recipients.map((r) => ({ label: r.label, keyId: r.keyId })) } : undefined } })}\n`);
    return;
  }
  process.stdout.write(
    `packed ${m.product} ${m.version} (${m.kind}) -> ${written.path}\n` +
      `  ${m.payloads.length} payload(s): ${m.payloads.map((p) => `${p.name} ${p.fileCount} entries ${p.compression}`).join(', ')}\n` +
      `  ${m.encryption ? `encrypted for ${m.encryption.recipients.map((r) => r.label).join(', ')}` : 'not encrypted'}\n` +
      `  ${written.size} bytes, sha256 ${written.sha256}\n`,
  );
}
