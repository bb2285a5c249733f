import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { revoke } from '../keys/key-dir.js';
import { exists } from '../../../base/src/fs/exists.js';
import { writePack, type WrittenPack, makePlan } from '../../../pack/src/index.js';
import { SAMPLE_PRODUCT, SAMPLE_RELEASES, type SampleReleaseVersion } from './releases.js';
import { writeLicenseRecipe, writeReleaseRecipe, writeTrustRecipe } from './recipes.js';
import { loadSampleSigner, makeSampleKeys, REVOKED_SIGNER_NAME, type SampleKeys } from './sample-keys.js';

/**
 * `images/build-samples --out DIR`: the sample PKI in DIR/keys and every sample pack in DIR,
 * signed by keys/signer and encrypted for keys/fleet.crt:
 *
 *   DIR/probe-app-{1.0.0,1.1.0,1.1.1,1.2.0-bad,1.2.0-crash}.spk, DIR/license.spk, DIR/trust.spk
 *
 * Packs are written in release order with strictly increasing createdAt, because a probe refuses
 * a pack created before the newest one it installed at the same securityVersion.
 */
export type SamplePackId = SampleReleaseVersion | 'license' | 'trust';

export const SAMPLE_PACK_IDS: readonly SamplePackId[] = Object.freeze([...SAMPLE_RELEASES.map((r) => r.version), 'license', 'trust']);

export interface SamplePaths {
  readonly out: string;
  readonly keys: SampleKeys;
  readonly packs: Readonly<Record<SamplePackId, string>>;
  /** With `systemd`: the releases that carry an app, packed to run as a systemd unit. */
  readonly systemd: Readonly<Partial<Record<SampleReleaseVersion, string>>>;
}

export interface BuildSamplesOptions {
  /** One line per step; silent by default. */
  readonly log?: (line: string) => void;
  /**
   * Also pack 1.0.0 and 1.1.0 to run under the systemd runner (probe-app-<v>-systemd.spk), each
   * created right after its process twin, so either chain stays in createdAt order.
   */
  readonly systemd?: boolean;
}

/** The releases whose app a systemd probe line needs (1.1.1 carries no app: 1.1.0's runs on). */
const SYSTEMD_VERSIONS: readonly SampleReleaseVersion[] = ['1.0.0', '1.1.0'];

export function systemdPackFile(version: SampleReleaseVersion): string {
  return `${SAMPLE_PRODUCT}-${version}-systemd.spk`;
}

export function samplePackFile(id: SamplePackId): string {
  return id === 'license' || id === 'trust' ? `${id}.spk` : `${SAMPLE_PRODUCT}-${id}.spk`;
}

/**
 * Packs a recipe folder with the sample signer, encrypted for the fleet key. A trust pack is
 * signed by the sample root itself: only a root may change a keyring (pack/src/trust.ts).
 */
export async function packSampleRecipe(src: string, out: string, keys: SampleKeys, createdAt?: Date): Promise<WrittenPack> {
  const plan = await makePlan(src, {});
  return writePack(plan, {
    out,
    signer: await loadSampleSigner(keys, plan.kind === 'trust' ? 'root' : 'signer'),
    recipients: [{ cert: new X509Certificate(await readFile(keys.fleetCert, 'utf8')) }],
    ...(createdAt ? { createdAt } : {}),
  });
}

/**
 * revocations.json revoking the revoked-signer, signed by the current root. It is produced by
 * `sonde keys revoke` run against a copy of the keys folder, so the vendor's own
 * keys/revocations.json is left as it was: the revocation reaches probes in the trust pack. The
 * copy holds only what revoke reads (the root pair, an existing list, the certificate).
 */
export async function makeTrustRevocations(keys: SampleKeys, scratch: string): Promise<string> {
  const copy = join(scratch, 'keys-copy');
  await mkdir(copy, { recursive: true, mode: 0o700 });
  const revokedCert = join(copy, `${REVOKED_SIGNER_NAME}.crt`);
  await copyFile(keys.rootCert, join(copy, 'root.crt'));
  await copyFile(keys.rootKey, join(copy, 'root.key'));
  await copyFile(keys.revokedSignerCert, revokedCert);
  const existing = join(keys.dir, 'revocations.json');
  if (await exists(existing)) await copyFile(existing, join(copy, 'revocations.json'));
  await revoke(copy, { cert: revokedCert, reason: 'sample: signer retired' });
  return join(copy, 'revocations.json');
}

function describe(w: WrittenPack): string {
  const m = w.manifest;
  const range = m.requires ? ` requires ${m.requires}` : '';
  return `${m.kind} ${m.version}${range} [${m.payloads.map((p) => p.type).join(', ')}] ${w.size} bytes`;
}

export async function buildSamples(outDir: string, options: BuildSamplesOptions = {}): Promise<SamplePaths> {
  const log = options.log ?? (() => undefined);
  const out = resolve(outDir);
  await mkdir(out, { recursive: true });
  const { keys, reused } = await makeSampleKeys(join(out, 'keys'));
  log(`${reused ? 'reused' : 'created'} ${keys.dir} (root, intermediate, signer, fleet, ${REVOKED_SIGNER_NAME}, second-root)`);

  const scratch = await mkdtemp(join(tmpdir(), 'sonde-samples-'));
  const packs: Partial<Record<SamplePackId, string>> = {};
  let last = 0;
  const nextCreatedAt = (): Date => {
    last = Math.max(Date.now(), last + 1);
    return new Date(last);
  };
  const pack = async (id: SamplePackId, src: string): Promise<void> => {
    const path = join(out, samplePackFile(id));
    const written = await packSampleRecipe(src, path, keys, nextCreatedAt());
    packs[id] = path;
    log(`wrote ${path}: ${describe(written)}`);
  };
  const systemd: Partial<Record<SampleReleaseVersion, string>> = {};
  try {
    for (const release of SAMPLE_RELEASES) {
      await pack(release.version, await writeReleaseRecipe(join(scratch, release.version), release));
      if (options.systemd && SYSTEMD_VERSIONS.includes(release.version)) {
        const path = join(out, systemdPackFile(release.version));
        const written = await packSampleRecipe(await writeReleaseRecipe(join(scratch, `${release.version}-systemd`), release, 'systemd'), path, keys, nextCreatedAt());
        systemd[release.version] = path;
        log(`wrote ${path}: ${describe(written)} (systemd runner)`);
      }
    }
    await pack('license', await writeLicenseRecipe(join(scratch, 'license')));
    const revocations = await makeTrustRevocations(keys, scratch);
    await pack('trust', await writeTrustRecipe(join(scratch, 'trust'), { roots: { 'root.crt': keys.rootCert, 'second-root.crt': keys.secondRootCert }, revocations }));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return { out, keys, packs: packs as Record<SamplePackId, string>, systemd };
}
