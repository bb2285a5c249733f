import { X509Certificate } from 'node:crypto';
import { rename, rm, stat } from 'node:fs/promises';
import { readCertificates } from '../keys/input-files.js';
import { dirname, join, resolve, basename } from 'node:path';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { parseDuration, printJson } from '../../../base/src/cli/output.js';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { diagnosticsRequests, loadPrivateKey, PackerError } from '../../../pack/src/index.js';
import type { OpenFlags, RequestFlags } from './diagnostics-command.js';


export async function requestAction(flags: RequestFlags): Promise<void> {
  if (!flags.output.endsWith('.sdr')) throw new CliError('USAGE', `--output ${flags.output}: a diagnostics request's name ends in .sdr (the drop recognises it so)`);
  let validMs: number;
  try {
    validMs = parseDuration(flags.valid);
  } catch (e) {
    throw new CliError('USAGE', `--valid: ${(e as Error).message}`);
  }
  const { signDiagnosticsRequest, MAX_REQUEST_VALIDITY_MS } = await diagnosticsRequests();
  if (validMs <= 0 || validMs > MAX_REQUEST_VALIDITY_MS) throw new CliError('USAGE', '--valid: between 1s and 30d');
  const key = await loadPrivateKey(flags.sign, flags.passphraseFile === undefined ? {} : { passphraseFile: flags.passphraseFile });
  const chainPem = await readCertificates(flags.cert, 'certificate chain');
  if (chainPem.length === 0) throw new PackerError('SIGNER_KEY_MISMATCH', `${flags.cert} holds no certificate`);
  const recipientPem = (await readCertificates(flags.recipient, 'recipient certificate'))[0];
  if (!recipientPem) throw new PackerError('RECIPIENT_CERT_INVALID', `${flags.recipient} holds no certificate`);
  if (!new X509Certificate(chainPem[0]!).checkPrivateKey(key)) throw new PackerError('SIGNER_KEY_MISMATCH', `${flags.sign} is not the key of the first certificate in ${flags.cert}`);
  const issued = new Date();
  const text = signDiagnosticsRequest(
    {
      probeIds: flags.probe,
      issuedAt: issued.toISOString().replace(/\.\d+Z$/, 'Z'),
      expiresAt: new Date(issued.getTime() + validMs).toISOString().replace(/\.\d+Z$/, 'Z'),
      recipient: recipientPem,
      ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
    },
    key,
    chainPem,
  );
  const out = resolve(flags.output);
  await writeFileAtomic(out, text);
  const body = (JSON.parse(text) as { body: { probeIds: string[]; expiresAt: string } }).body;
  if (flags.json) return printJson({ path: out, probeIds: body.probeIds, expiresAt: body.expiresAt });
  process.stdout.write(`wrote ${out}: for ${body.probeIds.join(', ')}, valid until ${body.expiresAt}\nput it in the probe's FTP drop (incoming/); the sealed bundle appears in its outbox\n`);
}

export async function openAction(file: string, flags: OpenFlags): Promise<void> {
  const { openSealedFile } = await diagnosticsRequests();
  const key = await loadPrivateKey(flags.key, flags.passphraseFile === undefined ? {} : { passphraseFile: flags.passphraseFile });
  const out = resolve(flags.output);
  const temp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  try {
    await openSealedFile(resolve(file), temp, key);
    await rename(temp, out);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
  const size = (await stat(out)).size;
  if (flags.json) return printJson({ path: out, bytes: size });
  process.stdout.write(`opened ${file} -> ${out} (${size} bytes; tar -tzf lists it)\n`);
}
