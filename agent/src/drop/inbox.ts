import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { z } from 'zod';
import { isSondeError } from '../errors/sonde-error.js';
import { layoutOf } from '../update/layout.js';
import { DropError } from './errors.js';
import type { DropEvent, DropInstall, DropStatus, IncompleteUpload, WaitingReason, WaitingUpload } from './drop-types.js';
import { freeName, moveFile } from './file-move.js';
import { openForWriting } from './open-writers.js';
import { measurePack } from './pack-extent.js';
import { readReceipts, writeReceipt, type DropOutcome, type DropReceipt, type FiledReceipt } from './receipt.js';
import { DEFAULT_RETENTION, pruneFolder, type RetentionPolicy } from './retention.js';
import { UploadTracker, signatureOf, type Upload } from './upload-tracker.js';

/**
 * The FTP drop (DESIGN.md, "The agent" → Drops; docs/ftp-drop.md). The probe's FTP server writes
 * uploads into `<state>/inbox`; each scan takes the files that are complete, oldest first, one at
 * a time, and hands them to the install engine. A file is complete when it is not named `*.part`,
 * its size and mtime have been stable for `stableMs`, no process holds it open for writing, and
 * its tar headers reach the end-of-archive block. Every pack that leaves the inbox goes to
 * processed/ (installed, or already installed) or rejected/ with a receipt written first.
 */
export interface DropInboxOptions {
  readonly root: string;
  /** The agent's state folder; defaults to <root>/var/sonde. processed/ and rejected/ live here. */
  readonly state?: string;
  /** Where the FTP server writes; defaults to <state>/inbox. Keep it on the state's file system. */
  readonly inbox?: string;
  readonly install: DropInstall;
  readonly onEvent?: (event: DropEvent) => void;
  /** How long size and mtime must stay unchanged (default 2000 ms). */
  readonly stableMs?: number;
  /** An incomplete upload not written to for this long goes to rejected/ (default 24 h). */
  readonly incompleteExpiryMs?: number;
  /** Packs kept in each of processed/ and rejected/ (default 20 / 30 days). */
  readonly retention?: Partial<RetentionPolicy>;
}

const HOUR = 3600 * 1000;

const timingSchema = z
  .object({
    stableMs: z.number().int().nonnegative(),
    incompleteExpiryMs: z.number().int().nonnegative(),
    maxCount: z.number().int().nonnegative(),
    maxAgeMs: z.number().int().nonnegative(),
  })
  .strict();

/** A file that passed the cheap checks of this scan, waiting its turn. */
interface Candidate {
  readonly name: string;
  readonly path: string;
  readonly st: Stats;
  readonly upload: Upload;
}

/** What one scan learns, and the receipts it reads at most once. */
interface Pass {
  readonly waiting: WaitingUpload[];
  readonly incomplete: IncompleteUpload[];
  receipts: FiledReceipt[] | null;
  filed: boolean;
}

type Decision = Pick<DropReceipt, 'outcome' | 'code' | 'message' | 'deploymentId' | 'version' | 'sha256' | 'packSize' | 'installStartedAt' | 'installEndedAt'>;

export class DropInbox {
  readonly inbox: string;
  readonly processed: string;
  readonly rejected: string;
  private readonly stableMs: number;
  private readonly expiryMs: number;
  private readonly retention: RetentionPolicy;
  private readonly uploads = new UploadTracker();
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private looping = false;
  private pruned = false;
  private installing: string | null = null;
  private snapshot: DropStatus;

  constructor(private readonly options: DropInboxOptions) {
    const state = layoutOf(options.root, options.state).state;
    this.inbox = options.inbox ?? join(state, 'inbox');
    this.processed = join(state, 'processed');
    this.rejected = join(state, 'rejected');
    const t = timingSchema.parse({
      stableMs: options.stableMs ?? 2000,
      incompleteExpiryMs: options.incompleteExpiryMs ?? 24 * HOUR,
      maxCount: options.retention?.maxCount ?? DEFAULT_RETENTION.maxCount,
      maxAgeMs: options.retention?.maxAgeMs ?? DEFAULT_RETENTION.maxAgeMs,
    });
    this.stableMs = t.stableMs;
    this.expiryMs = t.incompleteExpiryMs;
    this.retention = Object.freeze({ maxCount: t.maxCount, maxAgeMs: t.maxAgeMs });
    this.snapshot = { inbox: this.inbox, lastScanAt: null, installing: null, waiting: [], incomplete: [] };
  }

  /** One pass over the inbox. Calls queue up: passes never overlap, so installs never do. */
  scan(): Promise<void> {
    const run = this.chain.then(() => this.pass());
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Scans every `intervalMs` (counted from the end of the previous pass) until stop(). */
  start(intervalMs = 1000): void {
    if (this.looping) return;
    this.looping = true;
    const tick = (): void => {
      this.scan()
        .catch((e: unknown) => this.emit({ type: 'drop-error', name: null, code: isSondeError(e) ? e.code : 'DROP_UNREADABLE', message: messageOf(e) }))
        .finally(() => {
          if (this.looping) this.timer = setTimeout(tick, intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  /** Stops the loop; resolves when the pass in progress (an install, perhaps) has finished. */
  async stop(): Promise<void> {
    this.looping = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.chain;
  }

  /** Uploads still in the inbox, as of the last pass. */
  status(): DropStatus {
    return { ...this.snapshot, installing: this.installing };
  }

  private emit(event: DropEvent): void {
    this.options.onEvent?.(event);
  }

  private async pass(): Promise<void> {
    for (const dir of [this.inbox, this.processed, this.rejected]) {
      await mkdir(dir, { recursive: true }).catch((e: unknown) => {
        throw new DropError('DROP_UNREADABLE', `${dir} cannot be created (${errno(e)})`, { cause: e });
      });
    }
    const now = Date.now();
    const entries = await readdir(this.inbox, { withFileTypes: true }).catch((e: unknown) => {
      throw new DropError('DROP_UNREADABLE', `the inbox ${this.inbox} cannot be listed (${errno(e)})`, { cause: e });
    });
    const pass: Pass = { waiting: [], incomplete: [], receipts: null, filed: false };
    const ready: Candidate[] = [];
    const present = new Set<string>();
    for (const entry of entries) {
      // Hidden files and folders belong to uploaders and tools (rsync's .name.XXXXXX, our own
      // temp files); folders are never descended into.
      if (entry.name.startsWith('.') || !entry.isFile()) continue;
      const path = join(this.inbox, entry.name);
      const st = await lstat(path).catch(() => null);
      if (!st?.isFile()) continue;
      present.add(entry.name);
      const upload = this.uploads.observe(entry.name, st, now);
      const wait = (reason: WaitingReason): void => void pass.waiting.push(waitingOf(entry.name, st, upload, reason));
      if (entry.name.endsWith('.part')) wait('part');
      else if (upload.stuck) wait('unreadable');
      else if (now - upload.signatureSince < this.stableMs) wait('unstable');
      else ready.push({ name: entry.name, path, st, upload });
    }
    this.uploads.keepOnly(present);
    const writers = await openForWriting(ready.map((c) => ({ path: c.path, dev: c.st.dev, ino: c.st.ino })));
    const queue: Candidate[] = [];
    for (const c of ready) {
      if (writers.has(c.path)) pass.waiting.push(waitingOf(c.name, c.st, c.upload, 'open-writer'));
      else queue.push(c);
    }
    // Oldest first: the order the uploads were finished in.
    queue.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs || a.name.localeCompare(b.name));
    for (const c of queue) await this.handle(c, pass);
    if (pass.filed || !this.pruned) {
      this.pruned = true;
      for (const dir of [this.processed, this.rejected]) await pruneFolder(dir, this.retention);
    }
    this.snapshot = { inbox: this.inbox, lastScanAt: new Date().toISOString(), installing: null, waiting: pass.waiting, incomplete: pass.incomplete };
  }

  private async handle(c: Candidate, pass: Pass): Promise<void> {
    const { name, path, upload } = c;
    // Earlier installs of this pass took time: the file must still be the one that was checked.
    const st = await lstat(path).catch(() => null);
    if (!st || signatureOf(st) !== upload.signature) return;
    let extent;
    let sha256: string;
    try {
      extent = upload.extent ??= await measurePack(path);
      if (extent.kind === 'truncated' || upload.engineTruncated) {
        const needBytes = extent.kind === 'truncated' ? extent.needBytes : null;
        if (upload.announced !== 'incomplete') this.emit({ type: 'drop-incomplete', name, size: st.size, needBytes });
        upload.announced = 'incomplete';
        if (Date.now() - st.mtimeMs < this.expiryMs) {
          pass.incomplete.push({ name, size: st.size, since: iso(st.mtimeMs), needBytes, expiresAt: iso(st.mtimeMs + this.expiryMs) });
          return;
        }
        const hours = Math.round((this.expiryMs / HOUR) * 10) / 10;
        const missing = needBytes === null ? 'the pack ends early' : `the pack needs at least ${needBytes} bytes`;
        sha256 = upload.sha256 ??= await sha256Of(path);
        await this.file(c, st, pass, {
          ...noInstall(sha256, needBytes),
          outcome: 'incomplete',
          code: 'UPLOAD_INCOMPLETE',
          message: `the upload ends at ${st.size} bytes and ${missing}; nothing was written to it for ${hours} h`,
        });
        return;
      }
      sha256 = upload.sha256 ??= await sha256Of(path);
    } catch (e) {
      await this.unreadable(c, st, pass, e);
      return;
    }
    if (upload.announced !== 'received') this.emit({ type: 'drop-received', name, size: st.size, sha256 });
    upload.announced = 'received';
    const packSize = extent.kind === 'complete' ? extent.packBytes : null;
    const receipts = (pass.receipts ??= [...(await readReceipts(this.processed)), ...(await readReceipts(this.rejected))]);

    // A receipt written for these bytes whose pack never arrived beside it: the agent stopped
    // between the two steps. The outcome is known; finish the move, do not install again.
    for (const f of receipts) {
      if (f.receipt.inboxName !== name || f.receipt.sha256 !== sha256) continue;
      if (await lstat(join(f.dir, f.receipt.file)).then(() => true, () => false)) continue;
      await this.move(c, f, pass);
      return;
    }
    const earlier = receipts.find((f) => f.dir === this.processed && f.receipt.sha256 === sha256 && (f.receipt.outcome === 'committed' || f.receipt.outcome === 'duplicate'));
    if (earlier) {
      await this.file(c, st, pass, {
        ...noInstall(sha256, packSize),
        outcome: 'duplicate',
        code: null,
        message: `the same file was installed before${earlier.receipt.deploymentId ? ` (deployment ${earlier.receipt.deploymentId})` : ''}`,
        deploymentId: earlier.receipt.deploymentId,
        version: earlier.receipt.version,
      });
      return;
    }

    const startedAt = new Date().toISOString();
    this.installing = name;
    let decision: Decision;
    try {
      const r = await this.options.install(path);
      const ended = { sha256, packSize, installStartedAt: startedAt, installEndedAt: new Date().toISOString(), deploymentId: r.deploymentId, version: r.version };
      if (r.errorCode === 'PACK_TRUNCATED') {
        // The headers looked whole but the engine ran out of bytes: keep it as incomplete.
        upload.engineTruncated = true;
        delete upload.announced;
        return await this.handle(c, pass);
      }
      const outcome: DropOutcome = r.committed ? 'committed' : r.errorCode === 'ALREADY_INSTALLED' ? 'duplicate' : r.state === 'rolled-back' ? 'rolled-back' : 'failed';
      decision = { ...ended, outcome, code: r.committed ? null : r.errorCode, message: r.committed ? null : r.errorMessage };
    } catch (e) {
      if (isSondeError(e) && e.code === 'INSTALL_LOCKED') {
        this.emit({ type: 'drop-deferred', name, code: e.code, message: e.message });
        pass.waiting.push(waitingOf(name, st, upload, 'deferred'));
        return;
      }
      // A refusal without a deployment, or a bug: recorded, never retried in a loop.
      decision = {
        ...noInstall(sha256, packSize),
        installStartedAt: startedAt,
        installEndedAt: new Date().toISOString(),
        outcome: 'failed',
        code: isSondeError(e) ? e.code : 'DROP_INSTALL_ERROR',
        message: messageOf(e),
      };
    } finally {
      this.installing = null;
    }
    await this.file(c, st, pass, decision);
  }

  /** Writes the receipt, then moves the pack beside it (see receipt.ts for why in this order). */
  private async file(c: Candidate, st: Stats, pass: Pass, d: Decision): Promise<void> {
    const dir = d.outcome === 'committed' || d.outcome === 'duplicate' ? this.processed : this.rejected;
    const decidedAt = new Date();
    const receipt: DropReceipt = {
      receiptVersion: 1,
      file: await freeName(dir, c.name, decidedAt),
      inboxName: c.name,
      ...d,
      size: st.size,
      receivedAt: iso(c.upload.firstSeen),
      lastWriteAt: iso(st.mtimeMs),
      decidedAt: decidedAt.toISOString(),
    };
    try {
      await writeReceipt(dir, receipt);
    } catch (e) {
      c.upload.stuck = true;
      const outcome = `${d.outcome}${d.code ? ` ${d.code}` : ''}`;
      this.emit({ type: 'drop-error', name: c.name, code: 'DROP_UNREADABLE', message: `the receipt for ${c.name} (${outcome}) cannot be written in ${dir} (${errno(e)})` });
      return;
    }
    const filed = { dir, receipt };
    pass.receipts?.push(filed);
    await this.move(c, filed, pass);
  }

  private async move(c: Candidate, f: FiledReceipt, pass: Pass): Promise<void> {
    const to = join(f.dir, f.receipt.file);
    try {
      await moveFile(c.path, to);
    } catch (e) {
      c.upload.stuck = true;
      this.emit({ type: 'drop-error', name: c.name, code: 'DROP_UNREADABLE', message: `${c.name} cannot be moved to ${f.dir} (${errno(e)})` });
    }
    pass.filed = true;
    this.emit(eventOf(f, relative(join(f.dir, '..'), to), f.dir === this.processed));
  }

  /** The file cannot be read: rejected with DROP_UNREADABLE if it can at least be moved. */
  private async unreadable(c: Candidate, st: Stats, pass: Pass, e: unknown): Promise<void> {
    await this.file(c, st, pass, { ...noInstall(null, null), outcome: 'failed', code: 'DROP_UNREADABLE', message: `${c.name} cannot be read (${errno(e)})` });
  }
}

function eventOf(f: FiledReceipt, movedTo: string, processed: boolean): DropEvent {
  const r = f.receipt;
  const common = { name: r.inboxName, movedTo, deploymentId: r.deploymentId, version: r.version };
  if (processed && r.outcome === 'committed') return { type: 'drop-installed', ...common, sha256: r.sha256 };
  if (processed && r.outcome === 'duplicate') return { type: 'drop-duplicate', ...common, sha256: r.sha256 };
  return { type: 'drop-rejected', ...common, outcome: r.outcome, code: r.code, message: r.message };
}

function noInstall(sha256: string | null, packSize: number | null): Decision {
  return { outcome: 'failed', code: null, message: null, deploymentId: null, version: null, sha256, packSize, installStartedAt: null, installEndedAt: null };
}

function waitingOf(name: string, st: Stats, upload: Upload, reason: WaitingReason): WaitingUpload {
  return { name, size: st.size, since: iso(upload.firstSeen), reason };
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException | null)?.code ?? 'error';
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
