import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';

/**
 * The receipt left beside every pack that leaves the inbox (`<name>.receipt.json` in
 * processed/ or rejected/): what happened to it, and the facts an operator needs to match it
 * with the file they uploaded. It is written (atomically) BEFORE the pack is moved, so a crash
 * between the two never loses the outcome: on restart, a pack in the inbox whose name and
 * sha256 match a receipt whose pack is missing is moved there without being installed again.
 *
 * Receipts hold codes, engine messages, names and hashes only; never a site variable or a key.
 */
/** `on-trial`: an agent pack, installed; the new agent runs on trial after the agent's restart (docs/self-update.md). */
export const DROP_OUTCOMES = ['committed', 'duplicate', 'rolled-back', 'failed', 'incomplete', 'answered', 'on-trial'] as const;
export type DropOutcome = (typeof DROP_OUTCOMES)[number];

export const RECEIPT_SUFFIX = '.receipt.json';

const iso = z.iso.datetime();

export const dropReceiptSchema = z
  .object({
    receiptVersion: z.literal(1),
    /** The pack's name in the folder of the receipt (it differs from inboxName after a collision). */
    file: z.string().min(1),
    inboxName: z.string().min(1),
    outcome: z.enum(DROP_OUTCOMES),
    code: z.string().nullable(),
    message: z.string().nullable(),
    deploymentId: z.string().nullable(),
    /** The version the pack carries, as the engine read it from the signed manifest. */
    version: z.string().nullable(),
    /** sha256 of the whole file as it was taken from the inbox (null: it could not be read). */
    sha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
    /** Bytes of the file, and bytes its tar headers declare up to the end block (or at least). */
    size: z.number().int().nonnegative(),
    packSize: z.number().int().nonnegative().nullable(),
    /** First seen in the inbox by this agent, last written (mtime), install start/end, decision. */
    receivedAt: iso,
    lastWriteAt: iso,
    installStartedAt: iso.nullable(),
    installEndedAt: iso.nullable(),
    decidedAt: iso,
  })
  .strict();

export type DropReceipt = z.infer<typeof dropReceiptSchema>;

/** A receipt as found on disk, with the folder it sits in. */
export interface FiledReceipt {
  readonly dir: string;
  readonly receipt: DropReceipt;
}

export function receiptPathFor(dir: string, file: string): string {
  return join(dir, `${file}${RECEIPT_SUFFIX}`);
}

export async function writeReceipt(dir: string, receipt: DropReceipt): Promise<void> {
  await writeFileAtomic(receiptPathFor(dir, receipt.file), `${JSON.stringify(receipt, null, 2)}\n`);
}

/**
 * Every readable receipt in a folder. A receipt that does not parse (hand-edited, from a newer
 * agent) is skipped: it can neither prove a duplicate nor complete a move.
 */
export async function readReceipts(dir: string): Promise<FiledReceipt[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: FiledReceipt[] = [];
  for (const name of names.filter((n) => n.endsWith(RECEIPT_SUFFIX) && !n.startsWith('.')).sort()) {
    try {
      const parsed = dropReceiptSchema.safeParse(JSON.parse(await readFile(join(dir, name), 'utf8')));
      if (parsed.success) out.push({ dir, receipt: parsed.data });
    } catch {
      // removed meanwhile, or not JSON
    }
  }
  return out;
}
