import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../keys/key-dir.js';
import { loadPrivateKey, type Signer } from '../../../pack/src/index.js';
import { exists } from '../../../base/src/fs/exists.js';

/**
 * The test PKI the sample packs are built with, laid out as `sonde keys` lays out a keys folder:
 * root, intermediate, signer and the fleet recipient, plus what the trust pack needs: a second
 * signer that the trust pack revokes, and a second root (in its own folder, as it is another
 * vendor CA) that the trust pack adds to probes' keyrings. One key per role keeps a build at a
 * few seconds (an RSA-3072 key takes about one).
 */
export interface SampleKeys {
  readonly dir: string;
  readonly rootCert: string;
  readonly rootKey: string;
  readonly intermediateCert: string;
  readonly intermediateKey: string;
  /** Leaf then intermediate. */
  readonly signerCert: string;
  readonly signerKey: string;
  readonly fleetCert: string;
  readonly fleetKey: string;
  readonly revokedSignerCert: string;
  readonly revokedSignerKey: string;
  readonly secondRootDir: string;
  readonly secondRootCert: string;
  readonly secondRootKey: string;
}

export const REVOKED_SIGNER_NAME = 'revoked-signer';

export function sampleKeyPaths(dir: string): SampleKeys {
  const second = join(dir, 'second-root');
  return {
    dir,
    rootCert: join(dir, 'root.crt'),
    rootKey: join(dir, 'root.key'),
    intermediateCert: join(dir, 'intermediate.crt'),
    intermediateKey: join(dir, 'intermediate.key'),
    signerCert: join(dir, 'signer.crt'),
    signerKey: join(dir, 'signer.key'),
    fleetCert: join(dir, 'fleet.crt'),
    fleetKey: join(dir, 'fleet.key'),
    revokedSignerCert: join(dir, `${REVOKED_SIGNER_NAME}.crt`),
    revokedSignerKey: join(dir, `${REVOKED_SIGNER_NAME}.key`),
    secondRootDir: second,
    secondRootCert: join(second, 'root.crt'),
    secondRootKey: join(second, 'root.key'),
  };
}

/**
 * Creates the sample PKI in `dir`, or reuses it when a previous build left a complete one (so
 * packs can be rebuilt against keys probes already trust). A partial set is refused rather than
 * completed: keys issued under a root that may have been replaced would not chain.
 */
export async function makeSampleKeys(dir: string): Promise<{ keys: SampleKeys; reused: boolean }> {
  const keys = sampleKeyPaths(dir);
  const files = Object.entries(keys).filter(([k]) => k !== 'dir' && k !== 'secondRootDir');
  const present = await Promise.all(files.map(async ([, path]) => exists(path)));
  if (present.every(Boolean)) return { keys, reused: true };
  if (present.some(Boolean)) {
    const missing = files.filter((_, i) => !present[i]).map(([, path]) => path);
    throw new Error(`${dir} holds an incomplete sample key set (missing ${missing.join(', ')}); remove it or give another --out`);
  }
  await initCa(dir, { name: 'Sample Vendor Root CA' });
  await issueIntermediate(dir, { name: 'Sample Vendor Release CA' });
  await issueSigner(dir, { name: 'Sample Release Signer' });
  await issueRecipient(dir, { name: 'fleet' });
  await issueSigner(dir, { name: 'Sample Retired Signer', out: REVOKED_SIGNER_NAME });
  await initCa(keys.secondRootDir, { name: 'Sample Vendor Root CA 2' });
  return { keys, reused: false };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

/** The signer packs are signed with: a key and its chain as read from `<name>.key/.crt`. */
export async function loadSampleSigner(keys: SampleKeys, which: 'signer' | 'revoked-signer' | 'root' = 'signer'): Promise<Signer> {
  const [certPath, keyPath] =
    which === 'signer' ? [keys.signerCert, keys.signerKey] : which === 'root' ? [keys.rootCert, keys.rootKey] : [keys.revokedSignerCert, keys.revokedSignerKey];
  const chainPem = (await readFile(certPath, 'utf8')).match(PEM_CERT) ?? [];
  if (chainPem.length === 0) throw new Error(`${certPath} holds no certificate`);
  return { key: await loadPrivateKey(keyPath), chainPem };
}
