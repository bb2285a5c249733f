import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { PackCode } from '../../pack/src/errors.js';
import type { Keyring } from '../../pack/src/trust.js';
import type { Signer } from '../../pack/src/writer.js';
import { rawTar } from './hostile-tar.js';
import { expectRefused, runPack } from './pack-run.js';
import { treeDigest, writeRawPack } from './packs.js';
import { expectNothingEscaped, expectRefusedCleanly, makeSandbox } from './sandbox.js';

/**
 * The trust suites sign the same tiny, honest payload with many signers and ask one question:
 * does the agent install it or not, and with which code. The payload is fine; only the signer,
 * its chain, the keyring or the signed createdAt differ.
 */
const HONEST_TEXT = 'hello, probe\n';
export const HONEST_TAR = rawTar([{ path: 'hello.txt', data: HONEST_TEXT }]);

let counter = 0;

export async function signedPack(dir: string, signer: Signer, createdAt?: Date): Promise<string> {
  const out = join(dir, `signed-${++counter}.spk`);
  await writeRawPack(out, signer, [{ type: 'app', tar: HONEST_TAR, fileCount: 1 }], createdAt ? { createdAt } : {});
  return out;
}

/** Signs, verifies against `keyring`, and expects the refusal `code` with nothing written. */
export async function expectSignerRefused(
  dir: string,
  signer: Signer,
  keyring: Keyring,
  code: PackCode,
  createdAt?: Date,
): Promise<string> {
  const box = await makeSandbox(dir, `box-${++counter}`);
  const e = await expectRefused(await signedPack(dir, signer, createdAt), { keyring, staging: box.staging }, code);
  await expectRefusedCleanly(box);
  return e.message;
}

/** Signs, verifies against `keyring`, and expects the honest payload extracted, nothing else. */
export async function expectSignerAccepted(dir: string, signer: Signer, keyring: Keyring, createdAt?: Date): Promise<void> {
  const box = await makeSandbox(dir, `box-${++counter}`);
  await runPack(await signedPack(dir, signer, createdAt), { keyring, staging: box.staging });
  expect(Object.keys(await treeDigest(box.staging))).toEqual(['app', 'app/hello.txt']);
  expect(await readFile(join(box.staging, 'app', 'hello.txt'), 'utf8')).toBe(HONEST_TEXT);
  await expectNothingEscaped(box);
}

/** The certificates of a PEM text, each as its own PEM block. */
export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}
