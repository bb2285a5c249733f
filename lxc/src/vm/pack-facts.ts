import { loadKeyring, readPack, verifyPack, type Manifest } from '../../../pack/src/index.js';

/** A pack's manifest, after its signature and chain were verified against `rootCert` (the lab reads what it will check slots against). */
export async function readVerifiedManifest(path: string, rootCert: string): Promise<Manifest> {
  const pack = await verifyPack(await readPack(path), await loadKeyring(rootCert));
  try {
    return pack.manifest;
  } finally {
    await pack.close();
  }
}
