import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPack } from '../../pack/src/index.js';
import { initCa, issueSigner } from '../../images/src/keys/key-dir.js';
import { writePack, type Signer } from '../../pack/src/writer.js';
import { makePlan, type Recipe } from '../../pack/src/recipe.js';
import {
  loadSampleSigner,
  sampleRelease,
  writeReleaseRecipe,
  writeLicenseRecipe,
  writeTrustRecipe,
  type SampleLicence,
  type SamplePaths,
  type SampleReleaseVersion,
  type TrustContent,
} from '../../images/src/samples/index.js';
import { loadSigner } from './packs.js';

/**
 * Variants of the sample packs, built the vendor's way (the samples' recipe writer and the real
 * packer), encrypted for the sample fleet key: a sample release with some manifest fields changed,
 * signed by the sample signer, the revoked signer or a signer under a root no probe trusts.
 */
export interface VariantOptions {
  /** Manifest fields laid over the sample release's recipe (version, requires, securityVersion…). */
  readonly recipe?: Partial<Recipe>;
  readonly signer?: 'signer' | 'revoked-signer' | Signer;
  /** The signed createdAt; defaults to now. */
  readonly createdAt?: Date;
  /** Changes the app payload's folder (release.json, unit files…) before it is packed. */
  readonly app?: (appDir: string) => Promise<void>;
  /** A `hooks` payload: file name (pre-install, migrate, …, hooks.json) to content; scripts are made executable. */
  readonly hooks?: Readonly<Record<string, string>>;
}

async function signerOf(s: SamplePaths, which: VariantOptions['signer']): Promise<Signer> {
  if (which === undefined || which === 'signer' || which === 'revoked-signer') return loadSampleSigner(s.keys, which ?? 'signer');
  return which;
}

async function packRecipe(s: SamplePaths, src: string, out: string, o: VariantOptions): Promise<string> {
  const plan = await makePlan(src, {});
  await writePack(plan, {
    out,
    signer: await signerOf(s, o.signer),
    recipients: [{ cert: new X509Certificate(await readFile(s.keys.fleetCert, 'utf8')) }],
    ...(o.createdAt ? { createdAt: o.createdAt } : {}),
  });
  return out;
}

/** `<dir>/<name>.spk`: sample release `base` with `o.recipe` laid over its pack.json. */
export async function variantPack(s: SamplePaths, dir: string, name: string, base: SampleReleaseVersion, o: VariantOptions = {}): Promise<string> {
  const src = await writeReleaseRecipe(join(dir, `${name}.recipe`), sampleRelease(base));
  const recipePath = join(src, 'pack.json');
  const recipe = JSON.parse(await readFile(recipePath, 'utf8')) as Recipe;
  const payloads = { ...(recipe.payloads ?? {}), ...(o.hooks ? { hooks: 'hooks' } : {}) };
  await writeFile(recipePath, `${JSON.stringify({ ...recipe, ...o.recipe, payloads: { ...payloads, ...(o.recipe?.payloads ?? {}) } }, null, 2)}\n`);
  if (o.app) await o.app(join(src, 'app'));
  if (o.hooks) {
    await mkdir(join(src, 'hooks'), { recursive: true });
    for (const [name, text] of Object.entries(o.hooks)) await writeFile(join(src, 'hooks', name), text, { mode: name.endsWith('.json') ? 0o644 : 0o755 });
  }
  return packRecipe(s, src, join(dir, `${name}.spk`), o);
}

/** `<dir>/<name>.spk`: a trust pack carrying `content`. */
export async function trustVariantPack(s: SamplePaths, dir: string, name: string, content: TrustContent, o: VariantOptions = {}): Promise<string> {
  const src = await writeTrustRecipe(join(dir, `${name}.recipe`), content);
  return packRecipe(s, src, join(dir, `${name}.spk`), o);
}

/** A licence pack with its own licence.json, signed by the sample signer (or `o.signer`). */
export async function licenceVariantPack(s: SamplePaths, dir: string, name: string, licence: SampleLicence, o: VariantOptions = {}): Promise<string> {
  const src = await writeLicenseRecipe(join(dir, `${name}.recipe`), licence);
  return packRecipe(s, src, join(dir, `${name}.spk`), o);
}

/** A vendor PKI no probe trusts: a fresh root and a code-signing signer issued by it. */
export async function rogueSigner(dir: string): Promise<{ signer: Signer; rootCert: string }> {
  await mkdir(dir, { recursive: true });
  await initCa(dir, { name: 'Rogue Root CA' });
  await issueSigner(dir, { name: 'Rogue Signer' });
  return { signer: await loadSigner(dir, 'signer'), rootCert: join(dir, 'root.crt') };
}

/** The signed createdAt a pack claims (read without verifying: for building other fixtures only). */
export async function packCreatedAt(path: string): Promise<Date> {
  const p = await readPack(path);
  try {
    return new Date(p.claimedManifest().createdAt);
  } finally {
    await p.close();
  }
}
