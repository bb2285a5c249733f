import { printJson } from '../../../base/src/cli/output.js';
import { X509Certificate } from 'node:crypto';
import { readPack } from '../../../pack/src/index.js';
import { summariseCert } from './cert-summary.js';

/** Shows what a pack claims. Nothing here is verified, and the output says so. */
export async function inspectCommand(packPath: string, flags: { json?: boolean }): Promise<void> {
  const pack = await readPack(packPath);
  try {
    const m = pack.claimedManifest();
    const chain = pack.signature.chain.map((pem) => summariseCert(new X509Certificate(pem)));
    const recipients = (m.encryption?.recipients ?? []).map((r) => ({ label: r.label, keyId: r.keyId }));
    const { encryption: _omitted, ...rest } = m;
    if (flags.json) {
      printJson({ verified: false, manifest: { ...rest, encrypted: m.encryption !== undefined }, signature: { algorithm: pack.signature.algorithm, chain }, recipients });
      return;
    }
    const lines = [
      `${m.product} ${m.version} (${m.kind})  created ${m.createdAt}  NOT VERIFIED (use sonde verify)`,
      `  compatible: ${m.compatible.join(', ')}`,
      `  securityVersion: ${m.securityVersion}${m.requires ? `  requires: ${m.requires}` : ''}${m.minAgentVersion ? `  minAgentVersion: ${m.minAgentVersion}` : ''}${m.allowDowngrade ? `  downgrade allowed${m.downgradeFrom ? ` from ${m.downgradeFrom}` : ''}` : ''}`,
      `  signature: ${pack.signature.algorithm}`,
      ...chain.map((c, i) => `    ${i === 0 ? 'signer' : 'issuer'}: ${c.subject}  serial ${c.serial}  valid ${c.validFrom} .. ${c.validTo}  sha256 ${c.fingerprint256}`),
      `  payloads:`,
      ...m.payloads.map((p) => `    ${p.file}  ${p.type}  ${p.size} bytes stored, ${p.unpackedSize} unpacked, ${p.fileCount} entries, ${p.compression}${p.encryption ? ', encrypted' : ''}  sha256 ${p.sha256}`),
      recipients.length ? `  recipients:` : `  not encrypted`,
      ...recipients.map((r) => `    ${r.label}  key ${r.keyId}`),
    ];
    if (m.releaseNotes) lines.push('  release notes:', ...m.releaseNotes.split('\n').map((l) => `    ${l}`));
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await pack.close();
  }
}
