import type { X509Certificate } from 'node:crypto';
import { PackError } from './errors.js';
import { parseCertificates } from './pem.js';
import { algorithmFor, verifyBytes } from './signing.js';
import { parseManifest, type PackCursor, type UnverifiedPack } from './read.js';
import { readExtensions } from './cert-extensions.js';
import { verifyChain, verifyTrustPackSigner, type ChainContext, type Keyring, type TrustedChain } from './trust.js';
import type { Manifest } from './manifest.js';
import { walkRootRotations } from './root-rotation.js';

const VERIFIED = Symbol('verified');

/**
 * A pack whose manifest signature and signer chain have been checked against a keyring. Only
 * verifyPack() can make one (the constructor demands a module-private token, and the #brand field
 * makes the type nominal), and extraction accepts nothing else (STYLE.md, rule 1). The payloads
 * are still unread: their hashes are checked as they stream.
 */
export class VerifiedPack {
  readonly #brand = VERIFIED;
  #consumed = false;

  constructor(
    token: typeof VERIFIED,
    readonly manifest: Manifest,
    readonly manifestBytes: Buffer,
    readonly trust: TrustedChain,
    /** @internal */ readonly cursor: PackCursor,
  ) {
    if (token !== VERIFIED || this.#brand !== VERIFIED) throw new Error('a VerifiedPack is made only by verifyPack()');
  }

  /** The payload stream can be read once; a second extraction is a programming error. */
  takeCursor(): PackCursor {
    if (this.#consumed) throw new Error('this pack has already been extracted');
    this.#consumed = true;
    return this.cursor;
  }

  get signer(): X509Certificate {
    return this.trust.signer;
  }

  async close(): Promise<void> {
    await this.cursor.reader.close();
  }
}

/**
 * DESIGN.md "Trust", in order: the signature over the exact manifest bytes, made by the signer
 * certificate's key; only then is the manifest parsed (the signer's createdAt is needed for the
 * clock policy); then the chain is judged by the trust store at that createdAt.
 */
export interface VerifyOptions {
  /**
   * The probe's trusted time floor: the newest signed createdAt it has accepted. A certificate
   * that expired before it is refused (trust.ts, verifyChain step 6). Null where there is no
   * probe (the server's door, `sonde verify` without one).
   */
  readonly timeFloor?: Date | null;
}

export async function verifyPack(pack: UnverifiedPack, keyring: Keyring, options: VerifyOptions = {}): Promise<VerifiedPack> {
  try {
    const chain: X509Certificate[] = [];
    for (const pem of pack.signature.chain) {
      let certs: X509Certificate[];
      try {
        certs = parseCertificates(pem);
      } catch (e) {
        throw new PackError('SIGNATURE_MALFORMED', 'manifest.sig holds a certificate that does not parse', { cause: e });
      }
      if (certs.length !== 1) throw new PackError('SIGNATURE_MALFORMED', 'each chain element of manifest.sig must hold one certificate');
      chain.push(certs[0]!);
    }
    const signer = chain[0]!;
    const algorithm = algorithmFor(signer.publicKey);
    if (algorithm !== pack.signature.algorithm) {
      throw new PackError('SIGNATURE_INVALID', `manifest.sig claims ${pack.signature.algorithm} but the signer key needs ${algorithm}`);
    }
    if (!verifyBytes(signer.publicKey, algorithm, pack.manifestBytes, Buffer.from(pack.signature.signature, 'base64'))) {
      throw new PackError('SIGNATURE_INVALID', 'the manifest signature does not verify: the manifest or its signature was altered');
    }
    const manifest = parseManifest(pack.manifestBytes);
    // A trust pack changes the keyring: only a root may sign it. Every other kind is signed by a
    // code-signing certificate that chains to a root.
    const createdAt = new Date(manifest.createdAt);
    const ctx: ChainContext = { timeFloor: options.timeFloor ?? null, extensionsOf: readExtensions };
    const trust = manifest.kind === 'trust' ? trustPackSigner(chain, createdAt, keyring, ctx, manifest) : verifyChain(chain, createdAt, keyring, ctx);
    return new VerifiedPack(VERIFIED, manifest, pack.manifestBytes, trust, pack.cursor);
  } catch (e) {
    await pack.close().catch(() => undefined);
    throw e;
  }
}

/**
 * A trust pack's signer is judged against the keyring as it stands after the root rotations the
 * pack carries and the probe had not followed (root-rotation.ts): a probe offline across several
 * rotations catches up with the newest trust pack. The statements followed travel with the
 * result, for the installer to record once the pack is applied.
 */
function trustPackSigner(chain: readonly X509Certificate[], createdAt: Date, keyring: Keyring, ctx: ChainContext, manifest: Manifest): TrustedChain {
  const walk = walkRootRotations(keyring, manifest.rootRotations ?? [], createdAt, ctx);
  try {
    return { ...verifyTrustPackSigner(chain, createdAt, walk.keyring, ctx), rotations: walk.applied };
  } catch (e) {
    const first = walk.skipped[0];
    if (first !== undefined && e instanceof PackError && e.code === 'CHAIN_UNTRUSTED') {
      throw new PackError(
        'ROOT_ROTATION_UNTRUSTED',
        `the trust pack's signer is not a root this probe reaches through the root rotations it carries: rotation ${first.sequence} is ${first.reason}`,
        { cause: e },
      );
    }
    throw e;
  }
}
