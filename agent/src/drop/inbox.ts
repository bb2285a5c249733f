import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import { layoutOf } from '../update/layout.js';
import { DropError } from './errors.js';
import type { DropEvent, DropInstall, DropRequestAnswer, DropStatus, IncompleteUpload, WaitingReason, WaitingUpload } from './drop-types.js';
import { DropFiling, decisionOf, errnoOf, withoutInstall, type Decision, type Subject } from './filing.js';
import { openForWriting } from './open-writers.js';
import { measurePack, type PackExtent } from '../../../pack/src/index.js';
import type { FiledReceipt } from './receipt.js';
import { DEFAULT_RETENTION, pruneFolder, type RetentionPolicy } from './retention.js';
import { UploadTracker, signatureOf } from './upload-tracker.js';

/** A signed diagnostics request's file name ends so (agent/src/diagnostics/drop-request.ts). */
export const DIAGNOSTICS_REQUEST_SUFFIX = '.sdr';

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
  /** Answers a signed diagnostics request (`NAME.sdr`); without it, such a file is refused. */
  readonly answer?: DropRequestAnswer;
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

/** What one scan learns, and the receipts it reads at most once. */
interface Pass {
  readonly waiting: WaitingUpload[];
  readonly incomplete: IncompleteUpload[];
  receipts: FiledReceipt[] | null;
  filed: boolean;
}

export class DropInbox {
  readonly inbox: string;
  private readonly filing: DropFiling;
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
    this.filing = new DropFiling(join(state, 'processed'), join(state, 'rejected'), (e) => this.emit(e));
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
        .catch((e: unknown) => this.emit({ type: 'drop-error', name: null, code: isSondeError(e) ? e.code : 'DROP_UNREADABLE', message: e instanceof Error ? e.message : String(e) }))
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

  /** Where installed packs and their receipts go. */
  get processed(): string {
    return this.filing.processed;
  }

  /** Where refused, failed, rolled-back and expired packs and their receipts go. */
  get rejected(): string {
    return this.filing.rejected;
  }

  /** Uploads still in the inbox, as of the last pass. */
  status(): DropStatus {
    return { ...this.snapshot, installing: this.installing };
  }

  private emit(event: DropEvent): void {
    this.options.onEvent?.(event);
  }

  private async pass(): Promise<void> {
    for (const dir of [this.inbox, this.filing.processed, this.filing.rejected]) {
      await mkdir(dir, { recursive: true }).catch((e: unknown) => {
        throw new DropError('DROP_UNREADABLE', `${dir} cannot be created (${errnoOf(e)})`, { cause: e });
      });
    }
    const now = Date.now();
    const entries = await readdir(this.inbox, { withFileTypes: true }).catch((e: unknown) => {
      throw new DropError('DROP_UNREADABLE', `the inbox ${this.inbox} cannot be listed (${errnoOf(e)})`, { cause: e });
    });
    const pass: Pass = { waiting: [], incomplete: [], receipts: null, filed: false };
    const ready: Subject[] = [];
    const present = new Set<string>();
    for (const entry of entries) {
      // Hidden files and folders belong to uploaders and tools (rsync's .name.XXXXXX, our own
      // temp files); folders are never descended into.
      if (entry.name.startsWith('.') || !entry.isFile()) continue;
      const path = join(this.inbox, entry.name);
      const st = await lstat(path).catch(() => null);
      if (!st?.isFile()) continue;
      present.add(entry.name);
      const seen: Subject = { name: entry.name, path, st, upload: this.uploads.observe(entry.name, st, now) };
      if (entry.name.endsWith('.part')) pass.waiting.push(waitingOf(seen, 'part'));
      else if (seen.upload.stuck) pass.waiting.push(waitingOf(seen, 'unreadable'));
      else if (now - seen.upload.signatureSince < this.stableMs) pass.waiting.push(waitingOf(seen, 'unstable'));
      else ready.push(seen);
    }
    this.uploads.keepOnly(present);
    // A file already known to end early is not installed whoever holds it, so the walk over
    // /proc is spared for it: an abandoned upload costs one lstat per scan.
    const judged = (c: Subject): boolean => c.upload.extent?.kind === 'truncated' || c.upload.engineTruncated === true;
    const writers = await openForWriting(ready.filter((c) => !judged(c)).map((c) => ({ path: c.path, dev: c.st.dev, ino: c.st.ino })));
    const queue: Subject[] = [];
    for (const c of ready) {
      if (writers.has(c.path)) pass.waiting.push(waitingOf(c, 'open-writer'));
      else queue.push(c);
    }
    // Oldest first: the order the uploads were finished in.
    queue.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs || a.name.localeCompare(b.name));
    for (const c of queue) await this.handle(c, pass);
    if (pass.filed || !this.pruned) {
      this.pruned = true;
      for (const dir of [this.filing.processed, this.filing.rejected]) await pruneFolder(dir, this.retention);
    }
    this.snapshot = { inbox: this.inbox, lastScanAt: new Date().toISOString(), installing: null, waiting: pass.waiting, incomplete: pass.incomplete };
  }

  private async handle(c: Subject, pass: Pass): Promise<void> {
    const { name, path, upload } = c;
    // Earlier installs of this pass took time: the file must still be the one that was checked.
    const st = await lstat(path).catch(() => null);
    if (!st || signatureOf(st) !== upload.signature) return;
    if (name.endsWith(DIAGNOSTICS_REQUEST_SUFFIX)) {
      await this.handleRequest(c, st, pass);
      return;
    }
    let extent: PackExtent;
    let sha256: string;
    try {
      extent = upload.extent ??= await measurePack(path);
      if (extent.kind === 'truncated' || upload.engineTruncated) {
        await this.incomplete(c, pass, extent.kind === 'truncated' ? extent.needBytes : null);
        return;
      }
      sha256 = upload.sha256 ??= await sha256Of(path);
    } catch (e) {
      await this.fileInPass(c, pass, withoutInstall(null, null, { outcome: 'failed', code: 'DROP_UNREADABLE', message: `${name} cannot be read (${errnoOf(e)})` }));
      return;
    }
    const packSize = extent.kind === 'complete' ? extent.packBytes : null;
    const receipts = await this.received(c, st, sha256, pass);
    if (!receipts) return;
    const earlier = this.filing.installedBefore(receipts, sha256);
    if (earlier) {
      const by = earlier.receipt.deploymentId ? ` (deployment ${earlier.receipt.deploymentId})` : '';
      await this.fileInPass(c, pass, withoutInstall(sha256, packSize, {
        outcome: 'duplicate',
        code: null,
        message: `the same file was installed before${by}`,
        deploymentId: earlier.receipt.deploymentId,
        version: earlier.receipt.version,
      }));
      return;
    }

    const installStartedAt = new Date().toISOString();
    this.installing = name;
    let decision: Decision;
    try {
      const r = await this.options.install(path);
      if (r.errorCode === 'PACK_TRUNCATED') {
        // The headers looked whole but the engine ran out of bytes: incomplete, not refused.
        upload.engineTruncated = true;
        delete upload.announced;
        await this.incomplete(c, pass, null);
        return;
      }
      decision = decisionOf(r, { sha256, packSize, installStartedAt, installEndedAt: new Date().toISOString() });
    } catch (e) {
      if (isSondeError(e) && e.code === 'INSTALL_LOCKED') {
        this.emit({ type: 'drop-deferred', name, code: e.code, message: e.message });
        pass.waiting.push(waitingOf(c, 'deferred'));
        return;
      }
      // A refusal without a deployment, or a bug: filed, so it is never retried in a loop.
      decision = withoutInstall(sha256, packSize, {
        outcome: 'failed',
        code: isSondeError(e) ? e.code : 'DROP_INSTALL_ERROR',
        message: e instanceof Error ? e.message : String(e),
        installStartedAt,
        installEndedAt: new Date().toISOString(),
      });
    } finally {
      this.installing = null;
    }
    await this.fileInPass(c, pass, decision);
  }

  /**
   * A whole file about to be handled: announced once (drop-received), and, when a receipt for it
   * was written before a stop cut the move short, filed as that receipt says (null: done).
   */
  private async received(c: Subject, st: Stats, sha256: string, pass: Pass): Promise<FiledReceipt[] | null> {
    if (c.upload.announced !== 'received') this.emit({ type: 'drop-received', name: c.name, size: st.size, sha256 });
    c.upload.announced = 'received';
    const receipts = (pass.receipts ??= await this.filing.receipts());
    const interrupted = await this.filing.interrupted(receipts, c.name, sha256);
    if (!interrupted) return receipts;
    pass.filed = true;
    await this.filing.complete(c, interrupted);
    return null;
  }

  /**
   * A diagnostics request (docs/ftp-drop.md, "Diagnostics through the drop"): answered once per
   * distinct file (the same bytes again are a duplicate), filed like a pack with its receipt. It
   * does not take the install lock: collecting a bundle only reads.
   */
  private async handleRequest(c: Subject, st: Stats, pass: Pass): Promise<void> {
    const { name, path, upload } = c;
    let sha256: string;
    try {
      sha256 = upload.sha256 ??= await sha256Of(path);
    } catch (e) {
      await this.fileInPass(c, pass, withoutInstall(null, null, { outcome: 'failed', code: 'DROP_UNREADABLE', message: `${name} cannot be read (${errnoOf(e)})` }));
      return;
    }
    const receipts = await this.received(c, st, sha256, pass);
    if (!receipts) return;
    if (this.filing.installedBefore(receipts, sha256)) {
      await this.fileInPass(c, pass, withoutInstall(sha256, null, { outcome: 'duplicate', code: null, message: 'the same request was answered before' }));
      return;
    }
    const startedAt = new Date().toISOString();
    const r = this.options.answer
      ? await this.options.answer(path)
      : { ok: false as const, code: 'DIAGNOSTICS_REQUEST_INVALID', message: 'this agent answers no diagnostics request through its drop' };
    const times = { installStartedAt: startedAt, installEndedAt: new Date().toISOString() };
    await this.fileInPass(
      c,
      pass,
      r.ok
        ? withoutInstall(sha256, null, { outcome: 'answered', code: null, message: `the sealed bundle is outbox/${r.file}`, ...times })
        : withoutInstall(sha256, null, { outcome: 'failed', code: r.code, message: r.message, ...times }),
    );
  }

  /** A pack that ends early: listed as incomplete until it changes, or filed once it expired. */
  private async incomplete(c: Subject, pass: Pass, needBytes: number | null): Promise<void> {
    const { name, st, upload } = c;
    if (upload.announced !== 'incomplete') this.emit({ type: 'drop-incomplete', name, size: st.size, needBytes });
    upload.announced = 'incomplete';
    // Expiry counts from the last write (mtime), so it survives restarts of the agent.
    if (Date.now() - st.mtimeMs < this.expiryMs) {
      // Whole milliseconds for both, so that expiresAt - since is exactly the expiry.
      const since = Math.floor(st.mtimeMs);
      pass.incomplete.push({ name, size: st.size, since: new Date(since).toISOString(), needBytes, expiresAt: new Date(since + this.expiryMs).toISOString() });
      return;
    }
    const hours = Math.round((this.expiryMs / HOUR) * 10) / 10;
    const missing = needBytes === null ? 'the pack ends early' : `the pack needs at least ${needBytes} bytes`;
    const sha256 = upload.sha256 ?? (await sha256Of(c.path).catch(() => null));
    await this.fileInPass(c, pass, withoutInstall(sha256, needBytes, {
      outcome: 'incomplete',
      code: 'UPLOAD_INCOMPLETE',
      message: `the upload ends at ${st.size} bytes and ${missing}; nothing was written to it for ${hours} h`,
    }));
  }

  private async fileInPass(c: Subject, pass: Pass, d: Decision): Promise<void> {
    // The status between scans is the last pass's: a file being filed now is neither incomplete
    // nor waiting any more, and must not read so once its outcome's event is out.
    this.snapshot = {
      ...this.snapshot,
      waiting: this.snapshot.waiting.filter((w) => w.name !== c.name),
      incomplete: this.snapshot.incomplete.filter((u) => u.name !== c.name),
    };
    const filed = await this.filing.file(c, d);
    if (!filed) return;
    pass.filed = true;
    pass.receipts?.push(filed);
  }
}

function waitingOf(s: Subject, reason: WaitingReason): WaitingUpload {
  return { name: s.name, size: s.st.size, since: new Date(s.upload.firstSeen).toISOString(), reason };
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
