import type { KeyObject } from 'node:crypto';
import { expect } from 'vitest';
import { PackError, type PackCode } from '../../pack/src/errors.js';
import { extractPack, type ExtractResult } from '../../pack/src/extract.js';
import { readPack } from '../../pack/src/read.js';
import type { Keyring } from '../../pack/src/trust.js';
import { verifyPack } from '../../pack/src/verify.js';

/**
 * The agent's whole path for a pack, as one call: read, verify against a keyring, then extract
 * (or hash-only). Packs come from a file or from bytes held in memory, which the security and
 * fuzz suites mutate; bytes are fed in slices, as a socket would deliver them.
 */
export interface RunOptions {
  readonly keyring: Keyring;
  readonly staging?: string;
  readonly key?: KeyObject;
  readonly mode?: 'extract' | 'hash-only';
  /** The probe's trusted time floor (verifyPack's option). */
  readonly timeFloor?: Date;
}

/** Slices of `bytes`, `size` bytes each (or as many as `size()` says, for uneven slicing). */
export async function* fromBytes(bytes: Buffer, size: number | (() => number) = 64 * 1024): AsyncGenerator<Buffer> {
  let at = 0;
  while (at < bytes.length) {
    const n = Math.max(1, typeof size === 'number' ? size : size());
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

export async function runPack(source: string | Buffer | AsyncIterable<Buffer>, o: RunOptions): Promise<ExtractResult> {
  const unverified = await readPack(Buffer.isBuffer(source) ? fromBytes(source) : source);
  const pack = await verifyPack(unverified, o.keyring, o.timeFloor ? { timeFloor: o.timeFloor } : {});
  const mode = o.mode ?? 'extract';
  return extractPack(pack, {
    mode,
    ...(mode === 'extract' ? { staging: expectDefined(o.staging, 'staging') } : {}),
    ...(o.key ? { key: o.key } : {}),
  });
}

/** Runs the pack and returns how it was refused; fails the test if it was accepted or crashed. */
export async function refusalOf(source: string | Buffer | AsyncIterable<Buffer>, o: RunOptions): Promise<PackError> {
  let result: ExtractResult;
  try {
    result = await runPack(source, o);
  } catch (e) {
    if (e instanceof PackError) return e;
    throw new Error(`the pack was refused with an exception that is not a PackError: ${String(e)}`, { cause: e });
  }
  throw new Error(`the pack was accepted (${result.payloads.length} payload(s) extracted) but had to be refused`);
}

/** Runs the pack and asserts the exact code it is refused with; returns the error for more checks. */
export async function expectRefused(
  source: string | Buffer | AsyncIterable<Buffer>,
  o: RunOptions,
  code: PackCode,
): Promise<PackError> {
  const e = await refusalOf(source, o);
  expect(e.code, e.message).toBe(code);
  return e;
}

function expectDefined<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} is required in extract mode`);
  return v;
}
