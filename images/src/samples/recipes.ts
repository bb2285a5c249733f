import { access, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Recipe } from '../../../pack/src/index.js';
import {
  APP_ENTRY,
  SAMPLE_MIN_AGENT_VERSION,
  SAMPLE_MODEL,
  SAMPLE_PRODUCT,
  SAMPLE_SECURITY_VERSION,
  releaseJsonOf,
  SAMPLE_UNIT,
  SAMPLE_UNIT_FILE,
  type SampleRelease,
  type SampleRunner,
} from './releases.js';

/**
 * Recipe folders (docs/pack-format.md, "The recipe") for the sample releases, the sample licence
 * and a trust update. They are written into scratch folders and packed at once; no pack or
 * recipe is committed to the repository.
 */

/**
 * The app's source, images/probe-app/probe-app.cjs. It is found by walking up from this module,
 * which runs from images/src/samples/ under vitest and from dist/images/src/samples/ once built.
 */
export async function probeAppSource(): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'images', 'probe-app', APP_ENTRY);
    try {
      await access(candidate);
      return candidate;
    } catch {
      const up = dirname(dir);
      if (up === dir) throw new Error(`images/probe-app/${APP_ENTRY} not found above ${fileURLToPath(import.meta.url)}`);
      dir = up;
    }
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** The manifest fields every sample pack shares (the system images' recipes too: images/src/system). */
export function baseRecipe(kind: NonNullable<Recipe['kind']>, version: string, releaseNotes: string): Recipe {
  return {
    kind,
    product: SAMPLE_PRODUCT,
    version,
    compatible: [SAMPLE_MODEL],
    securityVersion: SAMPLE_SECURITY_VERSION,
    minAgentVersion: SAMPLE_MIN_AGENT_VERSION,
    releaseNotes,
  };
}

/**
 * Writes one release's recipe folder: pack.json plus a folder per payload, in the order app,
 * data, db, config; under the systemd runner the app also ships its unit. Returns `dir`.
 */
export async function writeReleaseRecipe(dir: string, release: SampleRelease, runner: SampleRunner = 'process'): Promise<string> {
  const payloads: NonNullable<Recipe['payloads']> = {};
  const releaseJson = releaseJsonOf(release, runner);
  if (releaseJson) {
    await mkdir(join(dir, 'app'), { recursive: true });
    await copyFile(await probeAppSource(), join(dir, 'app', APP_ENTRY));
    await writeJson(join(dir, 'app', 'release.json'), releaseJson);
    if (runner === 'systemd') {
      await mkdir(join(dir, 'app', 'systemd'), { recursive: true });
      await writeFile(join(dir, 'app', 'systemd', SAMPLE_UNIT), SAMPLE_UNIT_FILE);
    }
    payloads.app = 'app';
  }
  if (release.data) {
    for (const [name, content] of Object.entries(release.data)) await writeJson(join(dir, 'data', name), content);
    payloads.data = 'data';
  }
  if (release.migrations.length > 0) {
    await mkdir(join(dir, 'db', 'migrations'), { recursive: true });
    for (const m of release.migrations) {
      await writeFile(join(dir, 'db', 'migrations', `${m.name}.up.sql`), m.up);
      await writeFile(join(dir, 'db', 'migrations', `${m.name}.down.sql`), m.down);
    }
    payloads.db = 'db';
  }
  if (release.configTemplate || release.configOps.length > 0) {
    await mkdir(join(dir, 'config'), { recursive: true });
    if (release.configTemplate) await writeJson(join(dir, 'config', 'config.template.json'), release.configTemplate);
    for (const f of release.configOps) await writeJson(join(dir, 'config', 'ops', `${f.name}.json`), f.ops);
    payloads.config = 'config';
  }
  const recipe: Recipe = { ...baseRecipe(release.kind, release.version, release.releaseNotes), payloads };
  if (release.requires !== undefined) recipe.requires = release.requires;
  await writeJson(join(dir, 'pack.json'), recipe);
  return dir;
}

/** license.json as the sample app reads it. */
export interface SampleLicence {
  readonly licensee: string;
  /** The fleet the licence is issued to. */
  readonly fleet: string;
  /** A probe serial, or "*" for every probe of the fleet. */
  readonly serial: string;
  readonly features: readonly string[];
  readonly issuedAt: string;
}

export function sampleLicence(issuedAt: Date = new Date()): SampleLicence {
  return {
    licensee: 'Sample Networks Ltd',
    fleet: 'sample-fleet',
    serial: '*',
    features: ['alarms', 'reference-targets'],
    issuedAt: issuedAt.toISOString(),
  };
}

/** The licence pack's recipe: kind license, one `license` payload holding license.json. */
export async function writeLicenseRecipe(dir: string, licence: SampleLicence = sampleLicence()): Promise<string> {
  await writeJson(join(dir, 'license', 'license.json'), licence);
  await writeJson(join(dir, 'pack.json'), {
    ...baseRecipe('license', '1.0.0', `Licence for ${licence.licensee} (fleet ${licence.fleet}).`),
    payloads: { license: 'license' },
  } satisfies Recipe);
  return dir;
}

export interface TrustContent {
  /** The complete set of roots the keyring holds after the pack: file name in roots/ to the PEM file to copy. */
  readonly roots: Readonly<Record<string, string>>;
  /** A signed revocations.json to install beside them. */
  readonly revocations?: string;
}

/** The trust pack's recipe: kind trust, one `trust` payload with roots/*.crt and revocations.json. */
export async function writeTrustRecipe(dir: string, content: TrustContent, version = '1.0.0'): Promise<string> {
  await mkdir(join(dir, 'trust', 'roots'), { recursive: true });
  for (const [name, from] of Object.entries(content.roots)) await copyFile(from, join(dir, 'trust', 'roots', name));
  if (content.revocations !== undefined) await copyFile(content.revocations, join(dir, 'trust', 'revocations.json'));
  await writeJson(join(dir, 'pack.json'), {
    ...baseRecipe('trust', version, 'Keyring update: a second vendor root and a revoked signer.'),
    payloads: { trust: 'trust' },
  } satisfies Recipe);
  return dir;
}
