import { createHash, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PACK_MARKER, payloadEntryName } from '../../pack/src/format.js';
import type { Manifest, PackKind, PayloadEntry, PayloadType } from '../../pack/src/manifest.js';
import { newContentKey, wrapFor } from '../../pack/src/recipients.js';
import { derivePayloadKey, StreamSealer } from '../../pack/src/stream-aead.js';
import { encodeHeader, paddingFor } from '../../pack/src/tar-header.js';
import { loadKeyring, type Keyring } from '../../pack/src/trust.js';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../../images/src/keys/key-dir.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import { signManifest, writePack, type Signer } from '../../pack/src/writer.js';
import { makePlan, type PlanOverrides } from '../../pack/src/recipe.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

/** A vendor PKI made by `sonde keys`' own code, plus recipient keys for fleet, group and probe. */
export interface TestPki {
  dir: string;
  keyring: Keyring;
  signer: Signer;
  /** The root itself as a signer: what signs trust packs. */
  root: Signer;
  fleet: { cert: X509Certificate; key: KeyObject };
  group: { cert: X509Certificate; key: KeyObject };
  probe: { cert: X509Certificate; key: KeyObject };
}

export async function makePki(dir: string): Promise<TestPki> {
  await initCa(dir, { name: 'Test Root CA' });
  await issueIntermediate(dir, { name: 'Test Intermediate CA' });
  await issueSigner(dir, { name: 'Test Signer' });
  const recipients: Record<string, { cert: X509Certificate; key: KeyObject }> = {};
  for (const name of ['fleet', 'group-emea', 'probe-0001']) {
    await issueRecipient(dir, { name });
    recipients[name] = {
      cert: new X509Certificate(await readFile(join(dir, `${name}.crt`), 'utf8')),
      key: await loadPrivateKey(join(dir, `${name}.key`)),
    };
  }
  return {
    dir,
    keyring: await loadKeyring(join(dir, 'root.crt')),
    signer: await loadSigner(dir, 'signer'),
    root: await loadSigner(dir, 'root'),
    fleet: recipients.fleet!,
    group: recipients['group-emea']!,
    probe: recipients['probe-0001']!,
  };
}

export async function loadSigner(dir: string, name: string): Promise<Signer> {
  return {
    key: await loadPrivateKey(join(dir, `${name}.key`)),
    chainPem: (await readFile(join(dir, `${name}.crt`), 'utf8')).match(PEM_CERT) ?? [],
  };
}

export async function scratch(prefix = 'sonde-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes a tree of files: a string value is file content, `{ symlink }` makes a link. */
export async function writeTree(root: string, files: Record<string, string | Buffer | { symlink: string }>): Promise<void> {
  const { symlink } = await import('node:fs/promises');
  await mkdir(root, { recursive: true });
  for (const [rel, v] of Object.entries(files)) {
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    if (typeof v === 'object' && !Buffer.isBuffer(v)) await symlink(v.symlink, p);
    else await writeFile(p, v);
  }
}

/** Packs a folder with the real packer. */
export async function packTree(
  pki: TestPki,
  src: string,
  out: string,
  overrides: PlanOverrides & { recipients?: X509Certificate[]; createdAt?: Date; signer?: Signer },
): Promise<string> {
  const { recipients, createdAt, signer, ...flags } = overrides;
  const plan = await makePlan(src, { product: 'demo', version: '1.0.0', compatible: ['probe-x1'], ...flags });
  await writePack(plan, {
    out,
    signer: signer ?? pki.signer,
    recipients: (recipients ?? []).map((cert) => ({ cert })),
    ...(createdAt ? { createdAt } : {}),
  });
  return out;
}

/**
 * Assembles a pack from raw payload tars, signed by a real signer: how tests ship hostile
 * payloads that carry a valid signature (an attacker who stole a signing key, or a bug in a
 * vendor's build), to prove that extraction alone holds the line.
 */
export interface RawPayload {
  type: PayloadType;
  name?: string;
  tar: Buffer;
  compression?: 'gzip' | 'none';
  /** Override what the manifest declares. */
  declare?: Partial<Pick<PayloadEntry, 'unpackedSize' | 'fileCount' | 'sha256'>>;
  fileCount: number;
}

export async function writeRawPack(
  out: string,
  signer: Signer,
  payloads: RawPayload[],
  opts: { kind?: PackKind; recipients?: X509Certificate[]; createdAt?: Date; manifest?: Partial<Manifest> } = {},
): Promise<Buffer> {
  const contentKey = opts.recipients?.length ? newContentKey() : null;
  const entries: { entry: PayloadEntry; stored: Buffer }[] = payloads.map((p, i) => {
    const name = p.name ?? p.type;
    const file = payloadEntryName(i, name);
    const compression = p.compression ?? 'none';
    let stored = compression === 'gzip' ? gzipSync(p.tar) : p.tar;
    let salt: Buffer | null = null;
    if (contentKey) {
      salt = randomBytes(18);
      const sealer = new StreamSealer(derivePayloadKey(contentKey, salt, file));
      stored = Buffer.concat([...sealer.push(stored), sealer.end()]);
    }
    const entry: PayloadEntry = {
      name,
      type: p.type,
      file,
      size: stored.length,
      sha256: p.declare?.sha256 ?? createHash('sha256').update(stored).digest('hex'),
      unpackedSize: p.declare?.unpackedSize ?? p.tar.length,
      fileCount: p.declare?.fileCount ?? p.fileCount,
      compression,
    };
    if (salt) entry.encryption = { salt: salt.toString('base64') };
    return { entry, stored };
  });
  const manifest: Manifest = {
    kind: opts.kind ?? 'product',
    product: 'demo',
    version: '1.0.0',
    compatible: ['probe-x1'],
    securityVersion: 0,
    createdAt: (opts.createdAt ?? new Date()).toISOString(),
    payloads: entries.map((e) => e.entry),
    ...opts.manifest,
  };
  if (contentKey) {
    manifest.encryption = {
      algorithm: 'aes-256-gcm-stream-64k',
      recipients: opts.recipients!.map((c) => wrapFor(c.publicKey, 'r', contentKey)),
    };
  }
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const sig = Buffer.from(JSON.stringify(signManifest(manifestBytes, signer)));
  const parts: Buffer[] = [];
  const add = (name: string, body: Buffer): void => {
    parts.push(encodeHeader(name, body.length), body, Buffer.alloc(paddingFor(body.length)));
  };
  add('sonde-bundle', Buffer.from(PACK_MARKER));
  add('manifest.json', manifestBytes);
  add('manifest.sig', sig);
  for (const e of entries) add(e.entry.file, e.stored);
  parts.push(Buffer.alloc(1024));
  const bytes = Buffer.concat(parts);
  await writeFile(out, bytes);
  return bytes;
}

/** Every file under a folder with its sha256, for comparing trees. */
export async function treeDigest(root: string): Promise<Record<string, string>> {
  const { readdir, lstat, readlink } = await import('node:fs/promises');
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const info = await lstat(join(root, r));
      if (info.isSymbolicLink()) out[r] = `link:${await readlink(join(root, r))}`;
      else if (info.isDirectory()) {
        out[r] = 'dir';
        await walk(r);
      } else out[r] = createHash('sha256').update(await readFile(join(root, r))).digest('hex');
    }
  }
  await walk('');
  return out;
}
