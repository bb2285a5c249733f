import { join } from 'node:path';
import type { PackCode, PackError } from '../../pack/src/errors.js';
import type { PayloadEntry } from '../../pack/src/manifest.js';
import { countEntries, rawTar, type RawEntry } from './hostile-tar.js';
import { expectRefused } from './pack-run.js';
import { writeRawPack } from './packs.js';
import type { PkiWorld } from './pki-fixture.js';
import { expectRefusedCleanly, makeSandbox, type Sandbox } from './sandbox.js';

/**
 * One hostile payload, shipped under a valid vendor signature (a stolen signing key, or a broken
 * build), so that extraction alone has to hold the line. Entries are made per sandbox, so that
 * absolute paths and links aim at that sandbox's sentinel: if one got through, the sandbox check
 * would see it.
 */
export type HostileEntries = (box: Sandbox) => RawEntry[];

export interface HostileCase {
  /** The payload tar's entries; ignored when `tar` is given. */
  readonly entries?: HostileEntries;
  /** The payload tar's bytes, for damage that rawTar's entries cannot describe. */
  readonly tar?: (box: Sandbox) => Buffer;
  readonly code: PackCode;
  readonly fileCount?: number;
  readonly declare?: Partial<Pick<PayloadEntry, 'unpackedSize' | 'fileCount'>>;
  readonly compression?: 'gzip' | 'none';
  readonly encrypted?: boolean;
}

let counter = 0;

/** Packs the case, extracts it into a fresh sandbox, and expects its exact code and a clean sandbox. */
export async function expectHostileRefused(dir: string, world: PkiWorld, c: HostileCase): Promise<PackError> {
  const box = await makeSandbox(dir, `c${++counter}`);
  const entries = c.entries?.(box) ?? [];
  const tar = c.tar?.(box) ?? rawTar(entries);
  const out = join(dir, `c${counter}.spk`);
  await writeRawPack(
    out,
    world.vendor.signer,
    [{ type: 'app', tar, fileCount: c.fileCount ?? countEntries(entries), ...(c.declare ? { declare: c.declare } : {}), ...(c.compression ? { compression: c.compression } : {}) }],
    c.encrypted ? { recipients: [world.vendor.fleet.cert] } : {},
  );
  const e = await expectRefused(out, { keyring: world.vendor.keyring, staging: box.staging, ...(c.encrypted ? { key: world.vendor.fleet.key } : {}) }, c.code);
  await expectRefusedCleanly(box);
  return e;
}

/** A pax extended header record: "<len> key=value\n", where len counts the whole record. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}
