import { X509Certificate } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { keyringFromCertificates, loadKeyring, type Keyring } from '../../../pack/src/index.js';
import { ServerError } from '../errors.js';

/**
 * The vendor roots the server verifies uploads against (`--keyring`, `sonde server trust add`):
 * `<data>/keyring/<sha256 fingerprint>.crt`, plus the vendor's signed revocations.json when one
 * came with a root. The trust store decides (pack/src/trust.ts); this only keeps the files.
 * It is read again for every upload, so a root added while the server runs applies at once.
 */
export async function loadServerKeyring(dir: string): Promise<Keyring> {
  const names = await readdir(dir).catch(() => [] as string[]);
  if (!names.some((n) => n.endsWith('.crt'))) {
    throw new ServerError('KEYRING_EMPTY', 'the server trusts no vendor root yet: start it with --keyring ROOT.crt or run `sonde server trust add ROOT.crt`');
  }
  return loadKeyring(dir);
}

export interface TrustAdded {
  readonly roots: readonly { readonly subject: string; readonly fingerprint: string; readonly added: boolean }[];
  readonly revocations: boolean;
}

/**
 * Adds the self-signed CA roots of `certPath`: a certificate file (loadKeyring refuses anything
 * but roots in it) or a folder of them. A revocations.json beside the file (in the folder) is
 * taken too, once it verifies under the resulting roots.
 */
export async function addTrustedRoots(dir: string, certPath: string): Promise<TrustAdded> {
  const given = await loadKeyring(certPath);
  const existing = await readdir(dir).catch(() => [] as string[]);
  const roots: { subject: string; fingerprint: string; added: boolean }[] = [];
  for (const cert of given.roots) {
    const fingerprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
    const name = `${fingerprint}.crt`;
    const added = !existing.includes(name);
    if (added) await writeFileAtomic(join(dir, name), cert.toString());
    roots.push({ subject: cert.subject.replace(/\n/g, ', '), fingerprint, added });
  }
  let revocations = false;
  if (given.revocations !== null) {
    const beside = (await stat(certPath)).isDirectory() ? certPath : dirname(certPath);
    const text = await readFile(join(beside, 'revocations.json'), 'utf8');
    const all: X509Certificate[] = [];
    for (const name of (await readdir(dir)).filter((n) => n.endsWith('.crt')).sort()) all.push(new X509Certificate(await readFile(join(dir, name))));
    keyringFromCertificates(all, text); // throws REVOCATIONS_INVALID unless a root signed it
    await writeFileAtomic(join(dir, 'revocations.json'), text);
    revocations = true;
  }
  if (roots.length === 0) throw new ServerError('KEYRING_EMPTY', `${certPath} holds no root certificate`);
  return { roots, revocations };
}
