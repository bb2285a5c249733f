import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allErrorCodes } from '../../cli/src/error-registry.js';
import { isSondeError } from '../../base/src/errors/sonde-error.js';
import { packFolder } from '../helpers/pack-assembly.js';
import { layoutOf, type PackLayout } from '../helpers/pack-layout.js';
import { applyMutation, describeMutation, legitimateSpot, randomMutation, tellingOffsets } from '../helpers/pack-mutations.js';
import { fromBytes, runPack, type RunOptions } from '../helpers/pack-run.js';
import { loadSigner, scratch, treeDigest, writeTree } from '../helpers/packs.js';
import { pkiWorld } from '../helpers/pki-fixture.js';
import { mulberry32 } from '../helpers/prng.js';
import { expectNothingEscaped, makeSandbox, type Sandbox } from '../helpers/sandbox.js';

/**
 * The pack reader, verifier and extractor under random damage (RAUC fuzzes its bundle parser the
 * same way). Four genuine packs of a few KiB (a release plain and uncompressed, so that damage
 * reaches the payload tar parser and the extractor before the hash verdict; the same encrypted and
 * gzipped; a licence pack; a trust pack signed by the root)
 * are flipped, overwritten, cut, grown, and have their 512-byte blocks repeated and swapped.
 * Every mutant must be either refused with a documented code, or accepted with exactly the
 * genuine tree, and then only if the mutation touched bytes nothing authenticates.
 *
 *   SONDE_FUZZ_SEED=<n>   replay a run (the seed is printed on every run)
 *   SONDE_FUZZ_RUNS=<n>   mutants in total, split between the four packs (default 4000)
 *
 * The seed fixes every mutation and the packed files. The packs' signature, content key and salts
 * are random by design, so a failing mutant is also saved, with its genuine pack, for exact replay.
 */
const SEED = process.env.SONDE_FUZZ_SEED !== undefined ? Number(process.env.SONDE_FUZZ_SEED) >>> 0 : randomBytes(4).readUInt32BE(0);
const RUNS = Number(process.env.SONDE_FUZZ_RUNS ?? 4000);
const ITERATION_TIMEOUT_MS = 10_000;
const DOCUMENTED = new Set(allErrorCodes());
const FAILURES_DIR = join(tmpdir(), 'sonde-fuzz-failures', String(SEED));

interface Target {
  readonly label: string;
  readonly bytes: Buffer;
  readonly layout: PackLayout;
  readonly run: Omit<RunOptions, 'staging'>;
  readonly innerTars: boolean;
  readonly genuine: Record<string, string>;
  readonly file: string;
}

let tmp: { dir: string; cleanup: () => Promise<void> };
let targets: Target[];
let box: Sandbox;

beforeAll(async () => {
  tmp = await scratch('sonde-fuzz-');
  const world = await pkiWorld();
  const src = join(tmp.dir, 'src');
  const content = mulberry32(SEED ^ 0x5eed);
  await writeTree(src, {
    'pack.json': JSON.stringify({ payloads: { app: 'app', config: 'config' } }),
    'app/bin/run.sh': '#!/bin/sh\nexec ./probe --config ../config/probe.conf\n',
    'app/lib/libprobe.so.1': Buffer.from(Array.from({ length: 1500 }, () => content.int(256))),
    'app/lib/libprobe.so': { symlink: 'libprobe.so.1' },
    'app/share/doc/.keep': '',
    'config/probe.conf': 'interval=30\ntarget=10.0.0.1\n',
  });
  box = await makeSandbox(tmp.dir, 'sandbox', { createStaging: false });
  targets = [];
  for (const encrypted of [false, true]) {
    const label = encrypted ? 'encrypted, gzip' : 'plain, uncompressed';
    const path = join(tmp.dir, `${encrypted ? 'encrypted' : 'plain'}.spk`);
    await packFolder(world.vendor.signer, src, path, {
      compression: encrypted ? 'gzip' : 'none',
      ...(encrypted ? { recipients: [world.vendor.fleet.cert] } : {}),
    });
    const bytes = await readFile(path);
    const run = { keyring: world.vendor.keyring, ...(encrypted ? { key: world.vendor.fleet.key } : {}) };
    await runPack(bytes, { ...run, staging: box.staging });
    const genuine = await treeDigest(box.staging);
    await rm(box.staging, { recursive: true });
    targets.push({ label, bytes, layout: layoutOf(bytes), run, innerTars: !encrypted, genuine, file: encrypted ? 'encrypted' : 'plain' });
  }
  // The other kinds' paths: a licence pack, and a trust pack signed by the root itself (the
  // trust store judges its signer differently), both plain so that damage reaches the tar parser.
  const licenceSrc = join(tmp.dir, 'licence-src');
  await writeTree(licenceSrc, {
    'pack.json': JSON.stringify({ payloads: { license: 'license' } }),
    'license/license.json': JSON.stringify({ licensee: 'Fuzz Networks', fleet: 'fuzz', serial: '*', features: ['alarms'] }),
  });
  const trustSrc = join(tmp.dir, 'trust-src');
  await writeTree(trustSrc, {
    'pack.json': JSON.stringify({ payloads: { trust: 'trust' } }),
    'trust/roots/root.crt': await readFile(join(world.vendor.dir, 'root.crt'), 'utf8'),
  });
  const kinds = [
    { file: 'licence', label: 'licence, plain', src: licenceSrc, kind: 'license', signer: world.vendor.signer },
    { file: 'trust', label: 'trust, plain, root-signed', src: trustSrc, kind: 'trust', signer: await loadSigner(world.vendor.dir, 'root') },
  ] as const;
  for (const k of kinds) {
    const path = join(tmp.dir, `${k.file}.spk`);
    await packFolder(k.signer, k.src, path, { kind: k.kind, compression: 'none' });
    const bytes = await readFile(path);
    const run = { keyring: world.vendor.keyring };
    await runPack(bytes, { ...run, staging: box.staging });
    const genuine = await treeDigest(box.staging);
    await rm(box.staging, { recursive: true });
    targets.push({ label: k.label, bytes, layout: layoutOf(bytes), run, innerTars: true, genuine, file: k.file });
  }
});
afterAll(() => tmp.cleanup());

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no verdict after ${ITERATION_TIMEOUT_MS} ms (hang)`)), ITERATION_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('pack fuzzing', () => {
  it(`refuses every damaged pack with a documented code, or accepts it unchanged (seed ${SEED})`, async () => {
    console.info(`pack fuzz: seed ${SEED} (replay with SONDE_FUZZ_SEED=${SEED}), ${RUNS} mutants`);
    expect(Math.max(...targets.map((t) => t.bytes.length))).toBeLessThan(24 * 1024);
    const started = Date.now();
    const master = mulberry32(SEED);
    const failures: string[] = [];
    const codes: Record<string, number> = {};
    /** Accepted mutants by where they differ from the genuine pack. */
    const accepted = new Map<string, string[]>();
    let done = 0;
    const fail = async (i: number, target: Target, mutant: Buffer, message: string): Promise<void> => {
      await mkdir(FAILURES_DIR, { recursive: true });
      await writeFile(join(FAILURES_DIR, `${target.file}-genuine.spk`), target.bytes);
      await writeFile(join(FAILURES_DIR, `${target.file}-${i}.spk`), mutant);
      failures.push(`${message} (saved as ${join(FAILURES_DIR, `${target.file}-${i}.spk`)})`);
    };

    for (let i = 0; i < RUNS; i++) {
      // Each mutant has its own stream, so iteration i is the same whatever earlier ones did.
      const rng = mulberry32(master.seed());
      const target = targets[i % targets.length]!;
      const telling = tellingOffsets(target.layout, target.innerTars);
      let mutation = randomMutation(rng, target.layout, telling);
      let mutant = applyMutation(target.bytes, mutation);
      while (mutant.equals(target.bytes)) {
        mutation = randomMutation(rng, target.layout, telling);
        mutant = applyMutation(target.bytes, mutation);
      }
      const what = `seed ${SEED} #${i} (${target.label}): ${describeMutation(mutation)}`;
      const slice = rng.pick([512, 4096, 65536, 0]);
      const source = fromBytes(mutant, slice === 0 ? () => rng.between(1, 2048) : slice);
      done += 1;
      try {
        await withTimeout(runPack(source, { ...target.run, staging: box.staging }), what);
      } catch (e) {
        if (e instanceof Error && e.message.endsWith('(hang)')) throw e;
        if (!isSondeError(e)) await fail(i, target, mutant, `${what}: refused with an exception that is not a SondeError: ${String(e)}`);
        else if (!DOCUMENTED.has(e.code)) await fail(i, target, mutant, `${what}: refused with the undocumented code ${e.code}`);
        else codes[e.code] = (codes[e.code] ?? 0) + 1;
        const left = await readdir(box.staging).catch(() => []);
        if (left.length > 0) await fail(i, target, mutant, `${what}: refused but left ${left.join(', ')} in staging`);
        await rm(box.staging, { recursive: true, force: true });
        continue;
      }
      const tree = await treeDigest(box.staging);
      await rm(box.staging, { recursive: true, force: true });
      if (JSON.stringify(tree) !== JSON.stringify(target.genuine)) {
        await fail(i, target, mutant, `${what}: accepted with a tree that differs from the genuine one`);
        continue;
      }
      const spot = legitimateSpot(target.layout, target.bytes, mutant);
      if (spot === null) await fail(i, target, mutant, `${what}: accepted, but it changed bytes that are authenticated`);
      else accepted.set(spot, [...(accepted.get(spot) ?? []), `#${i} ${describeMutation(mutation)} (${target.label})`]);
    }

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const acceptedCount = [...accepted.values()].reduce((n, list) => n + list.length, 0);
    const where = [...accepted].map(([spot, list]) => `  ${list.length} differing in ${spot}, e.g. ${list.slice(0, 3).join('; ')}`);
    console.info(
      `pack fuzz: ${done} mutants in ${seconds} s (seed ${SEED})\n` +
        `  refused: ${Object.entries(codes).sort(([, a], [, b]) => b - a).map(([c, n]) => `${c} ${n}`).join(', ')}\n` +
        `  accepted ${acceptedCount}, each holding the genuine bytes wherever the reader authenticates:\n${where.join('\n')}`,
    );
    expect(failures).toEqual([]);
    expect(done).toBe(RUNS);
    // Nothing outside staging, and staging itself is gone.
    await mkdir(box.staging);
    await expectNothingEscaped(box);
  }, 300_000);
});
