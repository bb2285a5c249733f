import type { Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { DropEvent, DropInstallResult } from './drop-types.js';
import { freeName, moveFile } from './file-move.js';
import { readReceipts, writeReceipt, type DropOutcome, type DropReceipt, type FiledReceipt } from './receipt.js';
import type { Upload } from './upload-tracker.js';

/**
 * Filing a pack out of the inbox: the decision becomes a receipt in processed/ (committed, or
 * already installed) or rejected/ (everything else), the receipt is written first, the pack is
 * moved beside it, and the event is derived from the receipt, so a move finished after a crash
 * reports exactly what the interrupted one would have.
 */
export type Decision = Pick<DropReceipt, 'outcome' | 'code' | 'message' | 'deploymentId' | 'version' | 'sha256' | 'packSize' | 'installStartedAt' | 'installEndedAt'>;

/** A file of the inbox as this scan saw it. */
export interface Subject {
  readonly name: string;
  readonly path: string;
  readonly st: Stats;
  readonly upload: Upload;
}

/** A decision taken without the engine: nothing installed, no deployment. */
export function withoutInstall(sha256: string | null, packSize: number | null, d: Pick<Decision, 'outcome' | 'code' | 'message'> & Partial<Decision>): Decision {
  return { deploymentId: null, version: null, installStartedAt: null, installEndedAt: null, sha256, packSize, ...d };
}

/** The engine's answer as a filing decision. ALREADY_INSTALLED is a duplicate, not a refusal. */
export function decisionOf(r: DropInstallResult, facts: Pick<Decision, 'sha256' | 'packSize' | 'installStartedAt' | 'installEndedAt'>): Decision {
  if (r.onTrial) {
    const message = r.reboots ? `system ${r.version ?? ''} written to the other slot; it runs on trial once the probe has rebooted into it` : `agent ${r.version ?? ''} installed; it runs on trial once the agent has restarted`;
    return { ...facts, outcome: 'on-trial', code: null, message, deploymentId: r.deploymentId, version: r.version };
  }
  const outcome: DropOutcome = r.committed ? 'committed' : r.errorCode === 'ALREADY_INSTALLED' ? 'duplicate' : r.outcome === 'rolled-back' ? 'rolled-back' : 'failed';
  return {
    ...facts,
    outcome,
    code: r.committed ? null : r.errorCode,
    message: r.committed ? null : r.errorMessage,
    deploymentId: r.deploymentId,
    version: r.version,
  };
}

/** The outcomes filed in processed/: done, and never to be done again for the same bytes. */
const PROCESSED: ReadonlySet<DropOutcome> = new Set<DropOutcome>(['committed', 'duplicate', 'answered', 'on-trial']);

export class DropFiling {
  constructor(
    readonly processed: string,
    readonly rejected: string,
    private readonly emit: (e: DropEvent) => void,
  ) {}

  /** Every receipt of processed/ and rejected/ (retention keeps them few). */
  async receipts(): Promise<FiledReceipt[]> {
    return [...(await readReceipts(this.processed)), ...(await readReceipts(this.rejected))];
  }

  /**
   * A receipt written for these bytes under this name whose pack never arrived beside it: the
   * agent stopped between the two steps. Its outcome stands; the move only has to be finished.
   */
  async interrupted(receipts: readonly FiledReceipt[], name: string, sha256: string): Promise<FiledReceipt | null> {
    for (const f of receipts) {
      if (f.receipt.inboxName !== name || f.receipt.sha256 !== sha256) continue;
      if (!(await lstat(join(f.dir, f.receipt.file)).then(() => true, () => false))) return f;
    }
    return null;
  }

  /** An earlier drop of the very same bytes that is installed (committed, or itself a duplicate), or a request already answered. */
  installedBefore(receipts: readonly FiledReceipt[], sha256: string): FiledReceipt | null {
    return receipts.find((f) => f.dir === this.processed && f.receipt.sha256 === sha256 && PROCESSED.has(f.receipt.outcome)) ?? null;
  }

  /** Receipt first, then the move. Returns the receipt, or null when it could not be written. */
  async file(s: Subject, d: Decision): Promise<FiledReceipt | null> {
    const dir = PROCESSED.has(d.outcome) ? this.processed : this.rejected;
    const decidedAt = new Date();
    const receipt: DropReceipt = {
      receiptVersion: 1,
      file: await freeName(dir, s.name, decidedAt),
      inboxName: s.name,
      ...d,
      size: s.st.size,
      receivedAt: new Date(s.upload.firstSeen).toISOString(),
      lastWriteAt: s.st.mtime.toISOString(),
      decidedAt: decidedAt.toISOString(),
    };
    try {
      await writeReceipt(dir, receipt);
    } catch (e) {
      // Not moved either: the pack stays in the inbox, and is not tried again until it changes.
      s.upload.stuck = true;
      const outcome = `${d.outcome}${d.code ? ` ${d.code}` : ''}`;
      this.emit({ type: 'drop-error', name: s.name, code: 'DROP_UNREADABLE', message: `the receipt for ${s.name} (${outcome}) cannot be written in ${dir} (${errnoOf(e)})` });
      return null;
    }
    const filed = { dir, receipt };
    await this.complete(s, filed);
    return filed;
  }

  /** Moves the pack beside its receipt and reports the receipt's outcome. */
  async complete(s: Subject, f: FiledReceipt): Promise<void> {
    const to = join(f.dir, f.receipt.file);
    try {
      await moveFile(s.path, to);
    } catch (e) {
      s.upload.stuck = true;
      this.emit({ type: 'drop-error', name: s.name, code: 'DROP_UNREADABLE', message: `${s.name} cannot be moved to ${f.dir} (${errnoOf(e)})` });
    }
    this.emit(this.eventOf(f, relative(join(f.dir, '..'), to)));
  }

  private eventOf(f: FiledReceipt, movedTo: string): DropEvent {
    const r = f.receipt;
    const common = { name: r.inboxName, movedTo, deploymentId: r.deploymentId, version: r.version };
    if (f.dir === this.processed && r.outcome === 'committed') return { type: 'drop-installed', ...common, sha256: r.sha256 };
    if (f.dir === this.processed && r.outcome === 'duplicate') return { type: 'drop-duplicate', ...common, sha256: r.sha256 };
    if (f.dir === this.processed && r.outcome === 'answered') return { type: 'drop-answered', name: r.inboxName, movedTo, message: r.message };
    return { type: 'drop-rejected', ...common, outcome: r.outcome, code: r.code, message: r.message };
  }
}

export function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException | null)?.code ?? 'error';
}
