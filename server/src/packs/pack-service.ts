import type { X509Certificate } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { extractPack, readPack, verifyPack, type Manifest } from '../../../pack/src/index.js';
import { ServerError } from '../errors.js';
import type { PackRecord, PackSummary, Store } from '../store/types.js';
import { loadServerKeyring } from './keyring-dir.js';
import { isPackId, type PackStore } from './pack-store.js';

/**
 * Packs at the door (issue 5): an upload is streamed to disk, then verified exactly as a probe
 * would before installing it, minus decryption: signature, chain to a keyring root, revocation,
 * certificate validity at createdAt, and every payload's size and sha256 (extractPack in
 * 'hash-only' mode). Only then is it stored and listed. A refusal carries the pack's own code.
 */
export interface CertificateView {
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly validTo: string;
  readonly fingerprint256: string;
}

export interface SignerChain {
  /** Whether the keyring trusts the signer today. */
  readonly trusted: boolean;
  readonly code: string | null;
  readonly message: string | null;
  /** Signer first, the root last. */
  readonly chain: readonly CertificateView[];
}

export interface UploadResult {
  readonly pack: PackRecord;
  readonly created: boolean;
}

export class PackService {
  constructor(
    private readonly store: Store,
    readonly files: PackStore,
    private readonly keyringDir: string,
    private readonly log: Logger,
    readonly maxBytes: number,
  ) {}

  async upload(body: Readable, uploadedBy: string): Promise<UploadResult> {
    const received = await this.files.receive(body, this.maxBytes);
    let manifest: Manifest;
    let signer: string;
    try {
      ({ manifest, signer } = await this.check(received.tmp));
    } catch (e) {
      await this.files.discard(received);
      throw e;
    }
    await this.files.commit(received);
    const pack: PackRecord = {
      sha256: received.sha256,
      size: received.size,
      summary: summarise(manifest, signer),
      releaseNotes: manifest.releaseNotes ?? null,
      manifest,
      uploadedAt: new Date().toISOString(),
      uploadedBy,
    };
    const created = await this.store.packs.insert(pack);
    const stored = created ? pack : ((await this.store.packs.get(pack.sha256)) ?? pack);
    this.log.info({ sha256: pack.sha256, product: manifest.product, version: manifest.version, created }, 'pack stored');
    return { pack: stored, created };
  }

  /** An upload read from a file (import of an export): the same door. */
  async uploadFile(path: string, uploadedBy: string): Promise<UploadResult> {
    return this.upload(createReadStream(path, { highWaterMark: 1024 * 1024 }), uploadedBy);
  }

  /** The door itself: throws the pack's code unless the file at `path` is a pack the keyring trusts, whole. */
  async check(path: string): Promise<{ manifest: Manifest; signer: string }> {
    const keyring = await loadServerKeyring(this.keyringDir);
    const unverified = await readPack(path);
    const verified = await verifyPack(unverified, keyring);
    try {
      await extractPack(verified, { mode: 'hash-only' });
    } finally {
      await verified.close().catch(() => undefined);
    }
    return { manifest: verified.manifest, signer: verified.signer.subject.replace(/\n/g, ', ') };
  }

  /**
   * The signer's chain as the server's keyring judges it now, not as it did at upload: a signer
   * revoked since, or a root removed, shows here with its code (the dashboard's pack page).
   * Reads the pack's header and signature only; the payloads are not touched.
   */
  async signerChain(sha256: string): Promise<SignerChain> {
    await this.get(sha256);
    let verified: Awaited<ReturnType<typeof verifyPack>> | null = null;
    try {
      const keyring = await loadServerKeyring(this.keyringDir);
      verified = await verifyPack(await readPack(this.files.pathOf(sha256)), keyring);
      const describe = (c: X509Certificate) => ({
        subject: c.subject.replace(/\n/g, ', '),
        issuer: c.issuer.replace(/\n/g, ', '),
        serialNumber: c.serialNumber,
        validFrom: new Date(c.validFrom).toISOString(),
        validTo: new Date(c.validTo).toISOString(),
        fingerprint256: c.fingerprint256,
      });
      const chain = verified.trust.chain.map(describe);
      const root = describe(verified.trust.root);
      return { trusted: true, code: null, message: null, chain: chain.at(-1)?.fingerprint256 === root.fingerprint256 ? chain : [...chain, root] };
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      return { trusted: false, code: typeof code === 'string' ? code : 'INTERNAL_ERROR', message: (e as Error).message, chain: [] };
    } finally {
      await verified?.close().catch(() => undefined);
    }
  }

  async get(sha256: string): Promise<PackRecord> {
    if (!isPackId(sha256)) throw new ServerError('PACK_ID_INVALID', 'a pack id is a sha256: 64 lower-case hex characters');
    const pack = await this.store.packs.get(sha256);
    if (!pack) throw new ServerError('PACK_NOT_FOUND', `no pack ${sha256}`);
    return pack;
  }

  list(): Promise<PackRecord[]> {
    return this.store.packs.list();
  }

  /** Deletes a pack nothing holds (a live command, a rollout's pin). */
  async remove(sha256: string): Promise<void> {
    await this.get(sha256);
    const holders = await this.store.packs.holders(sha256);
    if (holders.length > 0) throw new ServerError('PACK_IN_USE', `pack ${sha256} is still needed by ${holders.join(', ')}`);
    // The row goes first: a backup taken in between then simply does not list the pack.
    await this.store.packs.delete(sha256);
    await this.files.remove(sha256);
    this.log.info({ sha256 }, 'pack deleted');
  }

  /**
   * Garbage collection: every pack nothing holds that was uploaded more than `olderThanMs` ago,
   * and pack files without a row (an upload interrupted between its rename and its insert).
   */
  async gc(opts: { olderThanMs: number; dryRun: boolean }): Promise<{ deleted: string[]; orphans: string[] }> {
    const cutoff = new Date(Date.now() - opts.olderThanMs).toISOString();
    const deleted = await this.store.packs.unreferenced(cutoff);
    const known = new Set((await this.store.packs.list()).map((p) => p.sha256));
    // An orphan younger than ten minutes may be an upload between its rename and its insert.
    const orphanCutoff = Date.now() - Math.max(opts.olderThanMs, 10 * 60_000);
    const orphans: string[] = [];
    for (const sha of await this.files.list()) {
      if (known.has(sha)) continue;
      const mtime = await this.files.mtimeMs(sha);
      if (mtime !== null && mtime < orphanCutoff) orphans.push(sha);
    }
    if (!opts.dryRun) {
      for (const sha of deleted) {
        await this.store.packs.delete(sha);
        await this.files.remove(sha);
      }
      for (const sha of orphans) await this.files.remove(sha);
      if (deleted.length + orphans.length > 0) this.log.info({ deleted: deleted.length, orphans: orphans.length }, 'packs collected');
    }
    return { deleted, orphans };
  }
}

export function summarise(m: Manifest, signer: string): PackSummary {
  return {
    kind: m.kind,
    product: m.product,
    version: m.version,
    compatible: m.compatible,
    requires: m.requires ?? null,
    securityVersion: m.securityVersion,
    createdAt: m.createdAt,
    encrypted: m.encryption !== undefined,
    payloads: m.payloads.map((p) => ({ name: p.name, type: p.type, size: p.size })),
    signer,
  };
}
