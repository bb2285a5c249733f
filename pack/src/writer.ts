import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { commitFile } from '../../base/src/fs/atomic.js';
import { PACK_MARKER, ENTRY_MANIFEST, ENTRY_MARKER, ENTRY_SIGNATURE, payloadEntryName } from './format.js';
import { manifestSchema, type Manifest, type PayloadEntry, type RootRotation } from './manifest.js';
import { newContentKey, wrapFor } from './recipients.js';
import { signBytes } from './signing.js';
import type { SignatureEnvelope } from './signature.js';
import { BLOCK, encodeHeader, paddingFor } from './tar-header.js';
import { PackerError } from './packer-errors.js';
import { buildPayload, listTree } from './payload-builder.js';
import type { PackPlan } from './recipe.js';

/**
 * Writes a `.spk` (DESIGN.md, "The service pack"): payloads are built first into temp files (the
 * manifest must state their sizes and hashes, and it precedes them in the pack), then the marker,
 * manifest, signature and payloads are written in order to a temp file that is renamed into place.
 */
export interface Signer {
  readonly key: KeyObject;
  /** Signer first, then intermediates, as PEM. */
  readonly chainPem: readonly string[];
}

export interface RecipientCert {
  readonly cert: X509Certificate;
}

export interface WritePackOptions {
  readonly out: string;
  readonly signer: Signer;
  readonly recipients?: readonly RecipientCert[];
  /** Defaults to now. Tests set it to exercise the clock policy. */
  readonly createdAt?: Date;
  /** A trust pack's root rotation history, oldest first (root-rotation.ts). */
  readonly rootRotations?: readonly RootRotation[];
  readonly onProgress?: (done: number, total: number, stage: string) => void;
}

export interface WrittenPack {
  readonly path: string;
  readonly manifest: Manifest;
  readonly size: number;
  readonly sha256: string;
}

function commonName(cert: X509Certificate): string {
  const cn = cert.subject.split('\n').find((l) => l.startsWith('CN='));
  return cn ? cn.slice(3) : cert.subject.replace(/\n/g, ', ');
}

export function signManifest(manifestBytes: Buffer, signer: Signer): SignatureEnvelope {
  const leaf = new X509Certificate(signer.chainPem[0] ?? '');
  if (!leaf.checkPrivateKey(signer.key)) {
    throw new PackerError('SIGNER_KEY_MISMATCH', `the signing key does not belong to the certificate ${commonName(leaf)}`);
  }
  const { algorithm, signature } = signBytes(signer.key, manifestBytes);
  return {
    format: 'sonde-signature-1',
    algorithm,
    signature: signature.toString('base64'),
    chain: signer.chainPem.map((p) => (p.endsWith('\n') ? p : `${p}\n`)),
  };
}

export async function writePack(plan: PackPlan, o: WritePackOptions): Promise<WrittenPack> {
  const out = resolve(o.out);
  const work = await mkdtemp(join(dirname(out), `.${basename(out)}.build-`));
  try {
    const contentKey = o.recipients && o.recipients.length > 0 ? newContentKey() : null;
    const recipients = (o.recipients ?? []).map(({ cert }) => {
      if (cert.publicKey.asymmetricKeyType !== 'rsa') {
        throw new PackerError('RECIPIENT_CERT_INVALID', `recipient ${commonName(cert)} has no RSA key`);
      }
      return wrapFor(cert.publicKey, commonName(cert), contentKey!);
    });
    let total = 0;
    for (const p of plan.payloads) total += p.type === 'system' ? (await stat(p.dir)).size : (await listTree(p.dir)).bytes;
    let done = 0;
    const payloads: { entry: PayloadEntry; tmp: string }[] = [];
    for (const [i, p] of plan.payloads.entries()) {
      const name = p.type;
      const file = payloadEntryName(i, name);
      const tmp = join(work, `payload-${i}`);
      const entry = await buildPayload({
        type: p.type,
        name,
        file,
        dir: p.dir,
        compression: plan.compression,
        contentKey,
        tmpPath: tmp,
        onTarBytes: (n) => {
          done += n;
          o.onProgress?.(Math.min(done, total), total, `packing ${name}`);
        },
      });
      payloads.push({ entry, tmp });
    }
    const manifestInput: Manifest = {
      kind: plan.kind,
      product: plan.product,
      version: plan.version,
      compatible: plan.compatible,
      securityVersion: plan.securityVersion,
      createdAt: (o.createdAt ?? new Date()).toISOString(),
      payloads: payloads.map((p) => p.entry),
    };
    if (plan.requires !== undefined) manifestInput.requires = plan.requires;
    if (plan.minAgentVersion !== undefined) manifestInput.minAgentVersion = plan.minAgentVersion;
    if (plan.releaseNotes !== undefined) manifestInput.releaseNotes = plan.releaseNotes;
    if (plan.allowDowngrade !== undefined) manifestInput.allowDowngrade = plan.allowDowngrade;
    if (plan.downgradeFrom !== undefined) manifestInput.downgradeFrom = plan.downgradeFrom;
    if (o.rootRotations !== undefined && o.rootRotations.length > 0) manifestInput.rootRotations = [...o.rootRotations];
    if (contentKey) manifestInput.encryption = { algorithm: 'aes-256-gcm-stream-64k', recipients };
    // The packer holds itself to the schema the agent enforces.
    const checked = manifestSchema.safeParse(manifestInput);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw new PackerError('RECIPE_INVALID', `manifest: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
    }
    const manifest = checked.data;
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    const sigBytes = Buffer.from(`${JSON.stringify(signManifest(manifestBytes, o.signer), null, 2)}\n`);

    const tmpOut = join(work, 'pack.spk');
    const hash = createHash('sha256');
    let size = 0;
    async function* entries(): AsyncGenerator<Buffer> {
      const small = (name: string, body: Buffer): Buffer[] => [encodeHeader(name, body.length), body, Buffer.alloc(paddingFor(body.length))];
      for (const b of [
        ...small(ENTRY_MARKER, Buffer.from(PACK_MARKER)),
        ...small(ENTRY_MANIFEST, manifestBytes),
        ...small(ENTRY_SIGNATURE, sigBytes),
      ]) yield b;
      for (const p of payloads) {
        yield encodeHeader(p.entry.file, p.entry.size);
        for await (const chunk of createReadStream(p.tmp, { highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
        yield Buffer.alloc(paddingFor(p.entry.size));
      }
      yield Buffer.alloc(2 * BLOCK);
    }
    await pipeline(
      entries(),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          hash.update(c);
          size += c.length;
          yield c;
        }
      },
      createWriteStream(tmpOut, { mode: 0o644 }),
    );
    await commitFile(tmpOut, out);
    return { path: out, manifest, size, sha256: hash.digest('hex') };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
