import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import type { EngineContext } from './context.js';
import type { Deployment } from './journal.js';
import { HookRunStore, type HookRun } from '../store/hook-runs.js';

/**
 * Every attempt leaves a receipt (JSON, in <state>/receipts/) beside its journal row: the outcome,
 * the error code, timings, and the probe's facts before and after. Receipts are built from the
 * journal only, which never holds a site-variable value.
 */
export interface Receipt {
  readonly id: string;
  readonly outcome: string;
  readonly errorCode: string | null;
  readonly reason: string | null;
  readonly pack: { readonly id: string; readonly path: string; readonly kind: string | null; readonly product: string | null; readonly version: string | null };
  readonly before: unknown;
  readonly after: unknown;
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly timings: Record<string, number>;
  readonly transitions: unknown[];
  /** The deployment hooks that ran, with their exit and output (site-variable values masked). */
  readonly hooks: readonly HookRun[];
}

/**
 * What a deployment shows as its outcome: the one recorded in the journal once it ended; one
 * still under way (an unfinished install in `history`) shows the state it is in.
 */
export function shownOutcome(d: Deployment): string {
  return d.outcome ?? d.state;
}

export function receiptOf(ctx: EngineContext, d: Deployment): Receipt {
  return {
    id: d.id,
    outcome: shownOutcome(d),
    errorCode: d.errorCode,
    reason: d.errorMessage,
    pack: { id: d.packSha256, path: d.packPath, kind: d.kind, product: d.product, version: d.toVersion },
    before: d.before,
    after: d.after,
    startedAt: d.startedAt,
    endedAt: d.endedAt,
    timings: d.timings,
    transitions: ctx.journal.transitions(d.id),
    hooks: new HookRunStore(ctx.journal.connection).all(d.id),
  };
}

export async function writeReceipt(ctx: EngineContext, d: Deployment): Promise<string> {
  await mkdir(ctx.layout.receipts, { recursive: true });
  const path = join(ctx.layout.receipts, `${d.id}.json`);
  await writeFileAtomic(path, `${JSON.stringify(receiptOf(ctx, d), null, 2)}\n`);
  return path;
}

/**
 * Retention (DESIGN.md): keep the last N receipts and database snapshots (and the previous slot,
 * which is simply the inactive one), so the free-disk check never blocks updates after months in
 * the field. Ids sort by time.
 */
export async function applyRetention(ctx: EngineContext): Promise<void> {
  const keep = ctx.retain;
  for (const dir of [ctx.layout.receipts, ctx.layout.snapshots]) {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      continue;
    }
    for (const n of names.slice(0, Math.max(0, names.length - keep))) await rm(join(dir, n), { recursive: true, force: true });
  }
  ctx.journal.prune(Math.max(keep * 10, 100));
}
