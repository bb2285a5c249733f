import { X509Certificate, randomBytes, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { z } from 'zod';
import { isCanonicalBase64 } from './base64.js';
import { canonicalJson } from './canonical-json.js';
import { readExtensions } from './cert-extensions.js';
import { PackError } from './errors.js';
import { MAX_CHAIN_LENGTH } from './format.js';
import { recipientSchema } from './manifest.js';
import { newContentKey, unwrapWith, wrapFor } from './recipients.js';
import { pemCert } from './signature.js';
import { algorithmFor, signBytes, verifyBytes } from './signing.js';
import { derivePayloadKey, StreamOpener, StreamSealer } from './stream-aead.js';
import { verifyChain, type Keyring } from './trust.js';

/**
 * A signed diagnostics request for a probe without a link to its fleet server (issue 23; docs/
 * ftp-drop.md, "Diagnostics through the drop"): someone who holds a code-signing key the probe's
 * keyring trusts asks named probes for a diagnostics bundle, and names the recipient certificate
 * the bundle is sealed to. Whoever carries the file (anyone on the FTP drop) can neither forge a
 * request nor read the answer. The signature covers the canonical JSON of `body`; the chain is
 * judged like a pack signer's (trust.ts) at `issuedAt`, and the request is refused after
 * `expiresAt` by the probe's clock.
 *
 * The answer is a sealed file: a line `sonde-sealed-1`, a JSON header line (the wrapped content
 * key for the recipient, a salt), then the bundle in the pack's STREAM construction (AES-256-GCM
 * over 64 KiB chunks, stream-aead.ts).
 */
export const DIAGNOSTICS_REQUEST_FORMAT = 'sonde-diagnostics-request-1';
export const MAX_REQUEST_BYTES = 64 * 1024;
/** The longest a request may stay valid: a request is an order to act, not a standing licence. */
export const MAX_REQUEST_VALIDITY_MS = 30 * 86_400_000;

const iso = z.string().datetime({ offset: false });
const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(2048).refine(isCanonicalBase64, 'base64 is not canonical');

export const requestBodySchema = z
  .object({
    /** The probes that answer it (ids as enrolled); another probe files it as refused. */
    probeIds: z.array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)).min(1).max(1000),
    issuedAt: iso,
    expiresAt: iso,
    /** 16 random bytes, hex: two requests never have the same bytes. */
    nonce: z.string().regex(/^[0-9a-f]{32}$/),
    /** The certificate whose public key the bundle is sealed to (`sonde keys issue-recipient`). */
    recipient: pemCert,
    reason: z.string().max(500).regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters').optional(),
  })
  .strict();
export type DiagnosticsRequestBody = z.infer<typeof requestBodySchema>;

const requestSchema = z
  .object({
    format: z.literal(DIAGNOSTICS_REQUEST_FORMAT),
    body: requestBodySchema,
    algorithm: z.enum(['rsa-pss-sha256', 'ecdsa-p256-sha256']),
    signature: base64,
    chain: z.array(pemCert).min(1).max(MAX_CHAIN_LENGTH),
  })
  .strict();

/** Writes a request signed by `key`, whose certificate is the first of `chainPem`. */
export function signDiagnosticsRequest(body: Omit<DiagnosticsRequestBody, 'nonce'> & { nonce?: string }, key: KeyObject, chainPem: readonly string[]): string {
  const full = requestBodySchema.parse({ ...body, nonce: body.nonce ?? randomBytes(16).toString('hex') });
  const { algorithm, signature } = signBytes(key, Buffer.from(canonicalJson(full)));
  return `${JSON.stringify({ format: DIAGNOSTICS_REQUEST_FORMAT, body: full, algorithm, signature: signature.toString('base64'), chain: chainPem }, null, 2)}\n`;
}

export interface VerifiedRequest {
  readonly body: DiagnosticsRequestBody;
  /** The signer's subject, for the receipt and the log. */
  readonly signer: string;
  readonly recipient: X509Certificate;
}

/**
 * Judges a request for probe `probeId`: well-formed, signed by a chain the keyring trusts at
 * `issuedAt` (revocations and the time floor included), valid now, addressed to this probe.
 */
export function verifyDiagnosticsRequest(bytes: Buffer, keyring: Keyring, o: { probeId: string; now: Date; timeFloor: Date | null }): VerifiedRequest {
  if (bytes.length > MAX_REQUEST_BYTES) throw new PackError('DIAGNOSTICS_REQUEST_INVALID', `a diagnostics request is at most ${MAX_REQUEST_BYTES} bytes; this one has ${bytes.length}`);
  let parsed: z.infer<typeof requestSchema>;
  try {
    parsed = requestSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (e) {
    throw new PackError('DIAGNOSTICS_REQUEST_INVALID', 'not a signed Sonde diagnostics request (malformed JSON or fields)', { cause: e });
  }
  const { body } = parsed;
  const issued = Date.parse(body.issuedAt);
  const expires = Date.parse(body.expiresAt);
  if (!(expires > issued) || expires - issued > MAX_REQUEST_VALIDITY_MS) {
    throw new PackError('DIAGNOSTICS_REQUEST_INVALID', `a request is valid for up to 30 days after it is issued (${body.issuedAt} to ${body.expiresAt})`);
  }
  let chain: X509Certificate[];
  let recipient: X509Certificate;
  try {
    chain = parsed.chain.map((pem) => new X509Certificate(pem));
    recipient = new X509Certificate(body.recipient);
  } catch (e) {
    throw new PackError('DIAGNOSTICS_REQUEST_INVALID', 'a certificate of the request cannot be parsed', { cause: e });
  }
  const trusted = verifyChain(chain, new Date(issued), keyring, { timeFloor: o.timeFloor, extensionsOf: readExtensions });
  const key = trusted.signer.publicKey;
  let declared: string;
  try {
    declared = algorithmFor(key);
  } catch {
    declared = '';
  }
  if (declared !== parsed.algorithm || !verifyBytes(key, parsed.algorithm, Buffer.from(canonicalJson(body)), Buffer.from(parsed.signature, 'base64'))) {
    throw new PackError('SIGNATURE_INVALID', 'the diagnostics request\'s signature does not verify with its signer\'s key');
  }
  if (o.now.getTime() > expires) throw new PackError('DIAGNOSTICS_REQUEST_EXPIRED', `the request expired at ${body.expiresAt} (the probe's clock reads ${o.now.toISOString()})`);
  if (!body.probeIds.includes(o.probeId)) throw new PackError('DIAGNOSTICS_REQUEST_INVALID', `the request is for ${body.probeIds.slice(0, 5).join(', ')}${body.probeIds.length > 5 ? '…' : ''}, not for probe ${o.probeId}`);
  return { body, signer: trusted.signer.subject.replace(/\n/g, ', '), recipient };
}

const SEALED_MAGIC = 'sonde-sealed-1';
const sealedHeaderSchema = z.object({ recipient: recipientSchema, salt: base64 }).strict();
const SEALED_ENTRY = 'diagnostics';

/** Seals `src` to the recipient certificate's key into `dest` (written whole or not at all by the caller's rename). */
export async function sealFile(src: string, dest: string, recipient: X509Certificate): Promise<number> {
  const contentKey = newContentKey();
  const salt = randomBytes(18);
  const header = { recipient: wrapFor(recipient.publicKey, recipient.subject.split('\n').find((l) => l.startsWith('CN='))?.slice(3) ?? 'recipient', contentKey), salt: salt.toString('base64') };
  const sealer = new StreamSealer(derivePayloadKey(contentKey, salt, SEALED_ENTRY));
  const out = createWriteStream(dest, { mode: 0o644 });
  const write = async (b: Buffer): Promise<void> => {
    if (!out.write(b)) await once(out, 'drain');
  };
  try {
    await write(Buffer.from(`${SEALED_MAGIC}\n${JSON.stringify(header)}\n`));
    for await (const chunk of createReadStream(src)) for (const sealed of sealer.push(chunk as Buffer)) await write(sealed);
    await write(sealer.end());
    out.end();
    await once(out, 'finish');
    const fh = await open(dest, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    out.destroy();
    await rm(dest, { force: true });
    throw e;
  }
  return (await stat(dest)).size;
}

/** Opens a sealed file with the recipient's private key into `dest`; DECRYPT_FAILED if any byte was changed. */
export async function openSealedFile(src: string, dest: string, key: KeyObject): Promise<void> {
  const fh = await open(src, 'r');
  let headerBytes: number;
  let header: z.infer<typeof sealedHeaderSchema>;
  try {
    const head = Buffer.alloc(8192);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const text = head.subarray(0, bytesRead).toString('latin1');
    const first = text.indexOf('\n');
    const second = text.indexOf('\n', first + 1);
    if (text.slice(0, first) !== SEALED_MAGIC || second < 0) throw new PackError('PACK_FORMAT', `${src} is not a sealed Sonde file`);
    try {
      header = sealedHeaderSchema.parse(JSON.parse(text.slice(first + 1, second)));
    } catch (e) {
      throw new PackError('PACK_FORMAT', `${src}: the sealed file's header is malformed`, { cause: e });
    }
    headerBytes = second + 1;
  } finally {
    await fh.close();
  }
  const contentKey = unwrapWith(key, [header.recipient]);
  const stored = (await stat(src)).size - headerBytes;
  const opener = new StreamOpener(derivePayloadKey(contentKey, Buffer.from(header.salt, 'base64'), SEALED_ENTRY), stored);
  const out = createWriteStream(dest, { mode: 0o600 });
  const write = async (b: Buffer): Promise<void> => {
    if (!out.write(b)) await once(out, 'drain');
  };
  try {
    for await (const chunk of createReadStream(src, { start: headerBytes })) for (const plain of opener.push(chunk as Buffer)) await write(plain);
    await write(opener.end());
    out.end();
    await once(out, 'finish');
  } catch (e) {
    out.destroy();
    await rm(dest, { force: true });
    throw e;
  }
}
