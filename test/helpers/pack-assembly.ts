import { createHash, randomBytes, type X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { PACK_MARKER, payloadEntryName } from '../../pack/src/format.js';
import type { Manifest, PayloadEntry } from '../../pack/src/manifest.js';
import { newContentKey, wrapFor } from '../../pack/src/recipients.js';
import { derivePayloadKey, StreamSealer } from '../../pack/src/stream-aead.js';
import { encodeHeader, paddingFor } from '../../pack/src/tar-header.js';
import { signManifest, writePack, type Signer } from '../../pack/src/writer.js';
import { makePlan, type PlanOverrides } from '../../pack/src/recipe.js';

/** Packs a folder with the real packer (as packTree does), signed by any signer. */
export async function packFolder(
  signer: Signer,
  src: string,
  out: string,
  overrides: PlanOverrides & { recipients?: readonly X509Certificate[]; createdAt?: Date } = {},
): Promise<string> {
  const { recipients, createdAt, ...flags } = overrides;
  const plan = await makePlan(src, { product: 'demo', version: '1.0.0', compatible: ['probe-x1'], ...flags });
  await writePack(plan, {
    out,
    signer,
    recipients: (recipients ?? []).map((cert) => ({ cert })),
    ...(createdAt ? { createdAt } : {}),
  });
  return out;
}

/**
 * A signed pack with one encrypted payload whose sealed chunks the test may rework before the
 * manifest is signed: what a vendor build with a broken sealer, or a thief holding the signing
 * key but not the recipients' keys, could ship. The manifest's size and sha256 describe the
 * reworked bytes, so the container and the hash are sound and only the AEAD can object.
 */
export interface SealedPackOptions {
  readonly signer: Signer;
  readonly recipient: X509Certificate;
  /** The plain payload tar. */
  readonly tar: Buffer;
  readonly fileCount: number;
  /** Receives the sealed chunks (64 KiB + tag each, the last one final) and returns what is stored. */
  readonly rework: (chunks: Buffer[]) => Buffer[];
}

export async function writeSealedPack(out: string, o: SealedPackOptions): Promise<Buffer> {
  const contentKey = newContentKey();
  const salt = randomBytes(18);
  const file = payloadEntryName(0, 'app');
  const sealer = new StreamSealer(derivePayloadKey(contentKey, salt, file));
  const chunks = [...sealer.push(o.tar), sealer.end()];
  const stored = Buffer.concat(o.rework(chunks));
  const entry: PayloadEntry = {
    name: 'app',
    type: 'app',
    file,
    size: stored.length,
    sha256: createHash('sha256').update(stored).digest('hex'),
    unpackedSize: o.tar.length,
    fileCount: o.fileCount,
    compression: 'none',
    encryption: { salt: salt.toString('base64') },
  };
  const manifest: Manifest = {
    kind: 'product',
    product: 'demo',
    version: '1.0.0',
    compatible: ['probe-x1'],
    securityVersion: 0,
    createdAt: new Date().toISOString(),
    payloads: [entry],
    encryption: { algorithm: 'aes-256-gcm-stream-64k', recipients: [wrapFor(o.recipient.publicKey, 'r', contentKey)] },
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const sig = Buffer.from(JSON.stringify(signManifest(manifestBytes, o.signer)));
  const parts: Buffer[] = [];
  for (const [name, body] of [
    ['sonde-bundle', Buffer.from(PACK_MARKER)],
    ['manifest.json', manifestBytes],
    ['manifest.sig', sig],
    [file, stored],
  ] as const) {
    parts.push(encodeHeader(name, body.length), body, Buffer.alloc(paddingFor(body.length)));
  }
  parts.push(Buffer.alloc(1024));
  const bytes = Buffer.concat(parts);
  await writeFile(out, bytes);
  return bytes;
}
