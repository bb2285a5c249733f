import { appendFile, mkdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DropInbox, type DropInboxOptions } from '../../agent/src/drop/index.js';
import { UpdateError } from '../../agent/src/update/errors.js';
import { scratch } from '../helpers/packs.js';
import { eventLog, holdForReading, holdForWriting, listing, packShaped, receiptOf, recordingInstall, release, releaseAll, sha256 } from './drop-fixtures.js';

/**
 * DropInbox with files the tests write themselves, and an install function that records what it
 * is given (the engine's verdicts are covered in inbox-engine.test.ts, real uploads in
 * vsftpd-drop.test.ts). stableMs is 0 unless a test is about it: one sighting is then enough, so
 * every other rule is seen on its own.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let state: string;
let inboxDir: string;
let n = 0;

beforeEach(async () => {
  tmp ??= await scratch('sonde-inbox-');
  state = join(tmp.dir, `probe-${++n}`, 'var', 'sonde');
  inboxDir = join(state, 'inbox');
  await mkdir(inboxDir, { recursive: true });
});
afterEach(releaseAll);
afterAll(async () => {
  await tmp.cleanup();
});

function inbox(install: DropInboxOptions['install'], extra: Partial<DropInboxOptions> = {}): DropInbox {
  return new DropInbox({ root: join(state, '..', '..'), install, stableMs: 0, ...extra });
}

const processed = (): string => join(state, 'processed');
const rejected = (): string => join(state, 'rejected');

describe('DropInbox: when an upload counts as complete', () => {
  it('ignores a *.part upload until it is renamed', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install);
    await writeFile(join(inboxDir, 'a.spk.part'), packShaped());
    await box.scan();
    await box.scan();
    expect(rec.calls).toEqual([]);
    expect(box.status().waiting).toEqual([expect.objectContaining({ name: 'a.spk.part', reason: 'part' })]);
    await rename(join(inboxDir, 'a.spk.part'), join(inboxDir, 'a.spk'));
    await box.scan();
    expect(rec.calls.map((c) => c.path)).toEqual([join(inboxDir, 'a.spk')]);
    expect(await listing(processed())).toEqual(['a.spk', 'a.spk.receipt.json']);
  });

  it('does not take a file that a process holds open for writing, until it is closed', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install);
    const path = join(inboxDir, 'held.spk');
    await writeFile(path, packShaped());
    const writer = await holdForWriting(path);
    await box.scan();
    expect(rec.calls).toEqual([]);
    expect(box.status().waiting).toEqual([expect.objectContaining({ name: 'held.spk', reason: 'open-writer' })]);
    await release(writer);
    await box.scan();
    expect(rec.calls).toHaveLength(1);
  });

  it('takes a file that is only open for reading', async () => {
    const rec = recordingInstall();
    const path = join(inboxDir, 'read.spk');
    await writeFile(path, packShaped());
    await holdForReading(path);
    await inbox(rec.install).scan();
    expect(rec.calls).toHaveLength(1);
  });

  it('waits until size and mtime have stayed the same for stableMs', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install, { stableMs: 300 });
    const path = join(inboxDir, 'growing.spk');
    const bytes = packShaped();
    await writeFile(path, bytes.subarray(0, 4000));
    await box.scan();
    await new Promise((r) => setTimeout(r, 200));
    await appendFile(path, bytes.subarray(4000));
    await box.scan(); // changed: the clock starts again
    await new Promise((r) => setTimeout(r, 200));
    await box.scan();
    expect(rec.calls).toEqual([]);
    expect(box.status().waiting).toEqual([expect.objectContaining({ name: 'growing.spk', size: bytes.length, reason: 'unstable' })]);
    await new Promise((r) => setTimeout(r, 150));
    await box.scan();
    expect(rec.calls).toEqual([{ path, sha256: sha256(bytes) }]);
  });

  it('ignores hidden files, dot-folders and folders', async () => {
    const rec = recordingInstall();
    await writeFile(join(inboxDir, '.hidden.spk'), packShaped());
    await mkdir(join(inboxDir, '.cache'));
    await writeFile(join(inboxDir, '.cache', 'x.spk'), packShaped());
    await mkdir(join(inboxDir, 'sub'));
    await writeFile(join(inboxDir, 'sub', 'y.spk'), packShaped());
    const box = inbox(rec.install);
    await box.scan();
    expect(rec.calls).toEqual([]);
    expect(box.status().waiting).toEqual([]);
    expect(await listing(inboxDir)).toEqual(['sub']);
  });
});

describe('DropInbox: uploads cut off halfway', () => {
  it('keeps a cut-off pack as incomplete without installing it, and installs it once the rest arrives', async () => {
    const rec = recordingInstall();
    const log = eventLog();
    const box = inbox(rec.install, { onEvent: log.onEvent });
    const path = join(inboxDir, 'cut.spk');
    const bytes = packShaped();
    await writeFile(path, bytes.subarray(0, 9000));
    await box.scan();
    await box.scan();
    expect(rec.calls).toEqual([]);
    const [inc] = box.status().incomplete;
    expect(inc).toMatchObject({ name: 'cut.spk', size: 9000 });
    expect(inc!.needBytes).toBeGreaterThan(9000);
    expect(Date.parse(inc!.expiresAt) - Date.parse(inc!.since)).toBe(24 * 3600 * 1000);
    expect(log.types()).toEqual(['drop-incomplete']); // reported once, not on every scan
    await appendFile(path, bytes.subarray(9000)); // a resumed upload (APPE / REST)
    await box.scan();
    expect(rec.calls).toEqual([{ path, sha256: sha256(bytes) }]);
    expect(box.status().incomplete).toEqual([]);
    expect(log.types()).toEqual(['drop-incomplete', 'drop-received', 'drop-installed']);
  });

  it('no longer lists an upload as incomplete once its outcome is reported, before the next scan ends', async () => {
    const rec = recordingInstall();
    const path = join(inboxDir, 'resumed.spk');
    const bytes = packShaped();
    const seenAtOutcome: string[][] = [];
    // The status a reader sees when the outcome's event goes out (the daemon reports both).
    const box: DropInbox = inbox(rec.install, {
      onEvent: (e) => {
        if (e.type === 'drop-installed') seenAtOutcome.push(box.status().incomplete.map((u) => u.name));
      },
    });
    await writeFile(path, bytes.subarray(0, 9000));
    await box.scan();
    expect(box.status().incomplete.map((u) => u.name)).toEqual(['resumed.spk']);
    await appendFile(path, bytes.subarray(9000));
    await box.scan();
    expect(seenAtOutcome).toEqual([[]]);
  });

  it('moves an incomplete upload to rejected/ with UPLOAD_INCOMPLETE once nothing was written for incompleteExpiryMs', async () => {
    const rec = recordingInstall();
    const log = eventLog();
    const box = inbox(rec.install, { onEvent: log.onEvent });
    const path = join(inboxDir, 'abandoned.spk');
    const bytes = packShaped().subarray(0, 5000);
    await writeFile(path, bytes);
    await box.scan();
    expect(box.status().incomplete).toHaveLength(1);
    // Last written 25 hours ago: past the default expiry of 24 h.
    const old = new Date(Math.floor((Date.now() - 25 * 3600 * 1000) / 1000) * 1000);
    await utimes(path, old, old);
    await box.scan();
    expect(rec.calls).toEqual([]);
    expect(await listing(inboxDir)).toEqual([]);
    expect(await listing(rejected())).toEqual(['abandoned.spk', 'abandoned.spk.receipt.json']);
    const r = await receiptOf(rejected(), 'abandoned.spk');
    expect(r).toMatchObject({ outcome: 'incomplete', code: 'UPLOAD_INCOMPLETE', deploymentId: null, sha256: sha256(bytes), size: 5000, lastWriteAt: old.toISOString() });
    expect(r.message).toContain('5000 bytes');
    expect(log.events.at(-1)).toMatchObject({ type: 'drop-rejected', name: 'abandoned.spk', code: 'UPLOAD_INCOMPLETE', movedTo: 'rejected/abandoned.spk' });
  });

  it('keeps a file the engine found cut short (PACK_TRUNCATED) as incomplete, without installing it again', async () => {
    const rec = recordingInstall(() => ({ committed: false, outcome: 'failed', errorCode: 'PACK_TRUNCATED', errorMessage: 'the pack ends inside payloads/01-app' }));
    const box = inbox(rec.install);
    await writeFile(join(inboxDir, 'odd.spk'), packShaped());
    await box.scan();
    await box.scan();
    expect(rec.calls).toHaveLength(1);
    expect(box.status().incomplete).toEqual([expect.objectContaining({ name: 'odd.spk', needBytes: null })]);
    expect(await listing(rejected())).toEqual([]);
  });
});

describe('DropInbox: outcomes, receipts and duplicates', () => {
  it('moves an installed pack to processed/ with a receipt written before the move', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install);
    const bytes = packShaped();
    await writeFile(join(inboxDir, 'good.spk'), bytes);
    await box.scan();
    const r = await receiptOf(processed(), 'good.spk');
    expect(r).toMatchObject({ outcome: 'committed', code: null, deploymentId: 'dep-1', version: '9.9.9', sha256: sha256(bytes), size: bytes.length, packSize: bytes.length - 512, inboxName: 'good.spk', file: 'good.spk' });
    expect(Date.parse(r.installEndedAt!)).toBeGreaterThanOrEqual(Date.parse(r.installStartedAt!));
    expect(await readFile(join(processed(), 'good.spk'))).toEqual(bytes);
  });

  it('moves a refused pack to rejected/ with the engine code and its deployment', async () => {
    const rec = recordingInstall(() => ({ committed: false, outcome: 'failed', errorCode: 'POLICY_NO_BASE_RELEASE', errorMessage: 'servicepack 1.1.1 needs an installed release', deploymentId: 'dep-x' }));
    const log = eventLog();
    await writeFile(join(inboxDir, 'sp.spk'), packShaped());
    await inbox(rec.install, { onEvent: log.onEvent }).scan();
    expect(await receiptOf(rejected(), 'sp.spk')).toMatchObject({ outcome: 'failed', code: 'POLICY_NO_BASE_RELEASE', deploymentId: 'dep-x' });
    expect(log.types()).toEqual(['drop-received', 'drop-rejected']);
  });

  it('recognises a duplicate drop by its sha256 and does not install it again', async () => {
    const rec = recordingInstall();
    const log = eventLog();
    const box = inbox(rec.install, { onEvent: log.onEvent });
    const bytes = packShaped();
    await writeFile(join(inboxDir, 'p.spk'), bytes);
    await box.scan();
    await writeFile(join(inboxDir, 'p.spk'), bytes); // the same name again: a collision in processed/
    await writeFile(join(inboxDir, 'copy.spk'), bytes);
    await box.scan();
    expect(rec.calls).toHaveLength(1);
    const files = await listing(processed());
    expect(files).toHaveLength(6);
    const stamped = files.find((f) => /^p\.\d{8}T\d{9}Z\.spk$/.test(f));
    expect(stamped).toBeDefined();
    expect(await receiptOf(processed(), stamped!)).toMatchObject({ outcome: 'duplicate', inboxName: 'p.spk', deploymentId: 'dep-1' });
    expect(await receiptOf(processed(), 'copy.spk')).toMatchObject({ outcome: 'duplicate', deploymentId: 'dep-1', sha256: sha256(bytes) });
    expect(log.types().filter((t) => t === 'drop-duplicate')).toHaveLength(2);
  });

  it('files an ALREADY_INSTALLED answer of the engine as a duplicate, not a rejection', async () => {
    const rec = recordingInstall(() => ({ committed: false, outcome: 'failed', errorCode: 'ALREADY_INSTALLED', errorMessage: 'probe-app 1.0.0 is already installed', version: '1.0.0' }));
    const log = eventLog();
    await writeFile(join(inboxDir, 'again.spk'), packShaped());
    await inbox(rec.install, { onEvent: log.onEvent }).scan();
    expect(await receiptOf(processed(), 'again.spk')).toMatchObject({ outcome: 'duplicate', code: 'ALREADY_INSTALLED', version: '1.0.0' });
    expect(await listing(rejected())).toEqual([]);
    expect(log.events.at(-1)).toMatchObject({ type: 'drop-duplicate', movedTo: 'processed/again.spk' });
  });

  it('finishes a move that a crash interrupted after the receipt, without installing again', async () => {
    const rec = recordingInstall();
    const bytes = packShaped();
    await writeFile(join(inboxDir, 'crash.spk'), bytes);
    await inbox(rec.install).scan();
    // As if the agent had died between writing the receipt and the rename.
    await rename(join(processed(), 'crash.spk'), join(inboxDir, 'crash.spk'));
    const log = eventLog();
    await inbox(rec.install, { onEvent: log.onEvent }).scan();
    expect(rec.calls).toHaveLength(1);
    expect(await listing(processed())).toEqual(['crash.spk', 'crash.spk.receipt.json']);
    expect(log.events.at(-1)).toMatchObject({ type: 'drop-installed', name: 'crash.spk', deploymentId: 'dep-1' });
  });

  it('records an internal error of the install as DROP_INSTALL_ERROR and does not retry it', async () => {
    const rec = recordingInstall(() => new Error('boom'));
    const box = inbox(rec.install);
    await writeFile(join(inboxDir, 'bug.spk'), packShaped());
    await box.scan();
    await box.scan();
    expect(rec.calls).toHaveLength(1);
    expect(await receiptOf(rejected(), 'bug.spk')).toMatchObject({ outcome: 'failed', code: 'DROP_INSTALL_ERROR', message: 'boom' });
  });

  it('leaves a pack in the inbox while another install holds the probe, and installs it later', async () => {
    const rec = recordingInstall((_, i) => (i === 1 ? new UpdateError('INSTALL_LOCKED', 'another install is running on this probe') : {}));
    const log = eventLog();
    const box = inbox(rec.install, { onEvent: log.onEvent });
    await writeFile(join(inboxDir, 'later.spk'), packShaped());
    await box.scan();
    expect(await listing(inboxDir)).toEqual(['later.spk']);
    expect(box.status().waiting).toEqual([expect.objectContaining({ reason: 'deferred' })]);
    await box.scan();
    expect(await listing(processed())).toEqual(['later.spk', 'later.spk.receipt.json']);
    expect(log.types()).toEqual(['drop-received', 'drop-deferred', 'drop-installed']);
  });
});

describe('DropInbox: order, loop and retention', () => {
  it('installs one pack at a time, oldest first, even when scans are called concurrently', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install);
    const t0 = Date.now() / 1000 - 100;
    for (const [name, age] of [['b.spk', 2], ['c.spk', 1], ['a.spk', 3]] as const) {
      await writeFile(join(inboxDir, name), packShaped());
      await utimes(join(inboxDir, name), t0 - age, t0 - age);
    }
    await Promise.all([box.scan(), box.scan(), box.scan()]);
    expect(rec.calls.map((c) => c.path.split('/').at(-1))).toEqual(['a.spk', 'b.spk', 'c.spk']);
    expect(rec.maxInFlight()).toBe(1);
  });

  it('scans on an interval between start() and stop()', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install);
    box.start(20);
    await writeFile(join(inboxDir, 'loop.spk'), packShaped());
    const until = Date.now() + 5000;
    while (rec.calls.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await box.stop();
    expect(rec.calls).toHaveLength(1);
    expect(box.status().lastScanAt).not.toBeNull();
  });

  it('keeps at most maxCount packs with their receipts in processed/, dropping the oldest', async () => {
    const rec = recordingInstall();
    const box = inbox(rec.install, { retention: { maxCount: 2 } });
    for (const name of ['r1.spk', 'r2.spk', 'r3.spk']) {
      await writeFile(join(inboxDir, name), packShaped());
      await box.scan();
      await new Promise((r) => setTimeout(r, 15)); // distinct mtimes
    }
    expect(await listing(processed())).toEqual(['r2.spk', 'r2.spk.receipt.json', 'r3.spk', 'r3.spk.receipt.json']);
  });

  it('drops packs and receipts older than maxAgeMs from processed/ and rejected/', async () => {
    const rec = recordingInstall((c) => (c.path.endsWith('bad.spk') ? { committed: false, outcome: 'failed', errorCode: 'SIGNATURE_INVALID', errorMessage: 'x' } : {}));
    const box = inbox(rec.install, { retention: { maxAgeMs: 60_000 } });
    await writeFile(join(inboxDir, 'old.spk'), packShaped());
    await writeFile(join(inboxDir, 'bad.spk'), packShaped());
    await box.scan();
    const old = new Date(Date.now() - 120_000);
    for (const f of ['old.spk', 'old.spk.receipt.json']) await utimes(join(processed(), f), old, old);
    for (const f of ['bad.spk', 'bad.spk.receipt.json']) await utimes(join(rejected(), f), old, old);
    await writeFile(join(inboxDir, 'new.spk'), packShaped());
    await box.scan();
    expect(await listing(processed())).toEqual(['new.spk', 'new.spk.receipt.json']);
    expect(await listing(rejected())).toEqual([]);
  });

  it('creates the inbox, processed/ and rejected/ when they are missing', async () => {
    await rm(inboxDir, { recursive: true });
    const rec = recordingInstall();
    await inbox(rec.install).scan();
    expect(await listing(state)).toEqual(['inbox', 'processed', 'rejected']);
  });
});
