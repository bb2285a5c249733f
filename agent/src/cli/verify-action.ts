import { jsonEnvelope } from '../../../base/src/cli/output.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { PackError, extractPack, loadKeyring, readPack, verifyPack, loadPrivateKey } from '../../../pack/src/index.js';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import { summariseCert } from './cert-summary.js';
import type { VerifyFlags } from './verify-command.js';

/**
 * Exit 0 only for a trusted pack. Without --key an encrypted pack has its signature, chain and
 * every ciphertext hash checked, and the output says the payloads were not decrypted. A plain
 * pack, or an encrypted one with --key, is extracted in full (to --extract, or to a scratch
 * folder that is removed), so "trusted" also means "every file in it is safe to install".
 */
export async function verifyCommand(packPath: string, flags: VerifyFlags): Promise<number> {
  let scratch: string | null = null;
  try {
    const keyring = await loadKeyring(flags.keyring);
    let key: KeyObject | undefined;
    if (flags.key) key = await loadPrivateKey(flags.key, flags.passphraseFile === undefined ? {} : { passphraseFile: flags.passphraseFile });
    const pack = await verifyPack(await readPack(packPath), keyring);
    const m = pack.manifest;
    const encrypted = m.encryption !== undefined;
    const hashOnly = encrypted && !key;
    let staging = flags.extract;
    if (!hashOnly && !staging) {
      scratch = await mkdtemp(join(tmpdir(), 'sonde-verify-'));
      staging = join(scratch, 'staging');
    }
    const result = await extractPack(pack, hashOnly ? { mode: 'hash-only' } : { mode: 'extract', staging: staging!, ...(key ? { key } : {}) });
    const decryption = !encrypted ? 'not encrypted' : result.decrypted ? 'decrypted' : 'not decrypted (no --key): ciphertext hashes checked';
    const extractedTo = flags.extract && !hashOnly ? flags.extract : null;
    if (flags.json) {
      process.stdout.write(
        `${jsonEnvelope({
          verdict: 'trusted',
          kind: m.kind,
          product: m.product,
          version: m.version,
          createdAt: m.createdAt,
          signer: summariseCert(pack.trust.signer),
          root: summariseCert(pack.trust.root),
          rootRotationsFollowed: pack.trust.rotations.map((r) => r.body.sequence),
          encrypted,
          decrypted: result.decrypted,
          extractedTo,
          payloads: result.payloads.map((p) => ({ name: p.entry.name, type: p.entry.type, sha256: p.entry.sha256, size: p.entry.size, entries: p.entries })),
        })}\n`,
      );
    } else {
      const signer = summariseCert(pack.trust.signer);
      process.stdout.write(
        `TRUSTED ${m.product} ${m.version} (${m.kind}), signed by ${signer.subject} (serial ${signer.serial}) under root ${summariseCert(pack.trust.root).subject}\n` +
          (pack.trust.rotations.length > 0 ? `  reached through root rotations ${pack.trust.rotations.map((r) => r.body.sequence).join(', ')} from keyring ${flags.keyring}\n` : '') +
          `  ${result.payloads.length} payload(s) match their signed sha256; ${decryption}` +
          `${extractedTo ? `; extracted to ${extractedTo}` : hashOnly ? '' : '; every entry checked by a scratch extraction'}\n`,
      );
    }
    return 0;
  } catch (e) {
    if (!isSondeError(e)) throw e;
    if (flags.json) {
      process.stdout.write(`${jsonEnvelope({ code: e.code, message: e.message, verdict: 'rejected' }, false)}\n`);
      process.stderr.write(`REJECTED ${e.code}: ${e.message}\n`);
    } else process.stdout.write(`REJECTED ${e.code}: ${e.message}\n`);
    return e instanceof PackError || isSondeError(e) ? 1 : 70;
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}
