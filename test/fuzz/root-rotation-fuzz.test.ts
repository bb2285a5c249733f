import { randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allErrorCodes } from '../../cli/src/error-registry.js';
import { isSondeError } from '../../base/src/errors/sonde-error.js';
import { initCa } from '../../images/src/keys/key-dir.js';
import { rotateRoot } from '../../images/src/keys/rotate-root.js';
import { readExtensions } from '../../pack/src/cert-extensions.js';
import { rootRotationSchema, type RootRotation } from '../../pack/src/manifest.js';
import { fingerprintHex } from '../../pack/src/revocations.js';
import { readRootRotations, walkRootRotations } from '../../pack/src/root-rotation.js';
import { keyringFromCertificates, type Keyring } from '../../pack/src/trust.js';
import { scratch } from '../helpers/packs.js';
import { mulberry32, type Rng } from '../helpers/prng.js';

/**
 * The root rotation walk under random damage to a genuine history of two rotations (2026 -> 2030
 * -> 2034): statements dropped, repeated and reordered; sequences, times, roots and signatures
 * changed, swapped between statements and between roots; characters flipped. The property: no
 * damaged history leads a probe to a set of roots, at a rotation, that the vendor never stated.
 * Every mutant is refused by the statement schema (MANIFEST_INVALID in a pack) or with a
 * documented code, or it leads exactly where a prefix of the genuine history leads (or nowhere).
 *
 *   SONDE_FUZZ_SEED=<n>   replay a run (the seed is printed)
 *   SONDE_FUZZ_RUNS=<n>   mutants (default 2000)
 */
const SEED = process.env.SONDE_FUZZ_SEED !== undefined ? Number(process.env.SONDE_FUZZ_SEED) >>> 0 : randomBytes(4).readUInt32BE(0);
const RUNS = Number(process.env.SONDE_FUZZ_RUNS ?? 2000);
const DOCUMENTED = new Set(allErrorCodes());
const PACK_CREATED = new Date(Date.now() + 60_000);
const ctx = { timeFloor: null, extensionsOf: readExtensions };

let tmp: { dir: string; cleanup: () => Promise<void> };
let history: RootRotation[];
const pems: Record<'r1' | 'r2' | 'r3' | 'evil', string> = { r1: '', r2: '', r3: '', evil: '' };
const certs: Record<string, X509Certificate> = {};
/** Where a genuine prefix of the history leads: "fingerprints@sequence". */
const stated = new Set<string>();

const where = (k: Keyring): string => `${k.roots.map(fingerprintHex).sort().join(',')}@${k.rotationSequence}`;

beforeAll(async () => {
  tmp = await scratch('sonde-rotation-fuzz-');
  for (const n of ['r1', 'r2', 'r3', 'evil'] as const) {
    await initCa(join(tmp.dir, n), { name: `Fuzz ${n}` });
    pems[n] = await readFile(join(tmp.dir, n, 'root.crt'), 'utf8');
    certs[n] = new X509Certificate(pems[n]);
  }
  await rotateRoot(join(tmp.dir, 'r1'), { to: join(tmp.dir, 'r2') });
  await rotateRoot(join(tmp.dir, 'r2'), { to: join(tmp.dir, 'r3') });
  history = await readRootRotations(join(tmp.dir, 'r3', 'rotations'));
  expect(history.map((s) => s.body.sequence)).toEqual([1, 2]);
  for (const [name, seq] of [['r1', 0], ['r2', 1], ['r3', 2]] as const) stated.add(`${fingerprintHex(certs[name]!)}@${seq}`);
}, 120_000);

afterAll(() => tmp.cleanup());

function flipChar(s: string, rng: Rng): string {
  if (s.length === 0) return 'x';
  const i = rng.int(s.length);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-:.\n ';
  return s.slice(0, i) + rng.pick([...alphabet]) + s.slice(i + 1);
}

/** One random change to a deep copy of the history; returns what it did. */
function mutate(list: RootRotation[], rng: Rng): string {
  const s = list.length > 0 ? rng.pick(list) : undefined;
  const other = rng.pick(history);
  const anyPem = (): string => rng.pick([pems.r1, pems.r2, pems.r3, pems.evil]);
  const ops: [string, () => void][] = [
    ['drop a statement', () => list.splice(rng.int(list.length), 1)],
    ['repeat a statement', () => list.splice(rng.int(list.length + 1), 0, structuredClone(rng.pick(history)))],
    ['reverse the statements', () => list.reverse()],
    ['change a sequence', () => s && (s.body.sequence = rng.pick([0, 1, 2, 3, s.body.sequence + 1, s.body.sequence - 1, 2 ** 31]))],
    ['move an issue time', () => s && (s.body.issuedAt = new Date(Date.parse(s.body.issuedAt) + rng.pick([-1, 1]) * rng.pick([1, 86_400_000, 10 * 365 * 86_400_000])).toISOString())],
    ['replace a root', () => s && (s.body.roots[rng.int(s.body.roots.length)] = anyPem())],
    ['add a root', () => s && s.body.roots.push(anyPem())],
    ['drop a root', () => s && s.body.roots.splice(rng.int(s.body.roots.length), 1)],
    ['drop a signature', () => s && s.signatures.splice(rng.int(s.signatures.length), 1)],
    ['repeat a signature', () => s && s.signatures.push(structuredClone(rng.pick(s.signatures)))],
    ['relabel a signature', () => s && s.signatures.length > 0 && (rng.pick(s.signatures).signer = fingerprintHex(certs[rng.pick(['r1', 'r2', 'r3', 'evil'])]!))],
    ['borrow a signature', () => s && s.signatures.length > 0 && (s.signatures[rng.int(s.signatures.length)] = structuredClone(rng.pick(other.signatures)))],
    ['flip a signature character', () => s && s.signatures.length > 0 && ((sig) => (sig.signature = flipChar(sig.signature, rng)))(rng.pick(s.signatures))],
    ['flip a root character', () => s && s.body.roots.length > 0 && ((i) => (s.body.roots[i] = flipChar(s.body.roots[i]!, rng)))(rng.int(s.body.roots.length))],
    ['swap bodies', () => s && (s.body = structuredClone(other.body))],
  ];
  const [name, op] = rng.pick(ops);
  op();
  return name;
}

describe('root rotation fuzzing', () => {
  it(`never leads a probe to roots the vendor did not state (seed ${SEED})`, () => {
    console.info(`root rotation fuzz: seed ${SEED} (replay with SONDE_FUZZ_SEED=${SEED}), ${RUNS} mutants`);
    const master = mulberry32(SEED);
    const starts: Keyring[] = [
      keyringFromCertificates([certs.r1!]),
      { ...keyringFromCertificates([certs.r2!]), rotationSequence: 1 },
      keyringFromCertificates([certs.r2!]),
    ];
    const failures: string[] = [];
    const outcomes: Record<string, number> = {};
    for (let i = 0; i < RUNS; i++) {
      const rng = mulberry32(master.seed());
      const list = structuredClone(history);
      const did = [mutate(list, rng), ...(rng.next() < 0.3 ? [mutate(list, rng)] : [])].join(', then ');
      const parsed = rootRotationSchema.array().safeParse(list);
      if (!parsed.success) {
        outcomes.MANIFEST_INVALID = (outcomes.MANIFEST_INVALID ?? 0) + 1;
        continue;
      }
      for (const start of starts) {
        try {
          const walk = walkRootRotations(start, parsed.data, PACK_CREATED, ctx);
          const end = where(walk.keyring);
          if (end !== where(start) && !stated.has(end)) failures.push(`#${i} (${did}) from ${where(start)}: led to ${end}`);
          outcomes.followed = (outcomes.followed ?? 0) + 1;
        } catch (e) {
          if (!isSondeError(e) || !DOCUMENTED.has(e.code)) failures.push(`#${i} (${did}): threw ${String(e)}`);
          else outcomes[e.code] = (outcomes[e.code] ?? 0) + 1;
        }
      }
    }
    console.info(`root rotation fuzz: ${Object.entries(outcomes).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    expect(failures).toEqual([]);
    // The fuzzer reached the walk's refusals, not only the schema's.
    expect(outcomes.ROOT_ROTATION_INVALID ?? 0).toBeGreaterThan(0);
  }, 120_000);
});
