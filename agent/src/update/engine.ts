import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { extractPack, loadKeyring, readPack, verifyPack, type VerifiedPack } from '../bundle/index.js';
import { isSondeError } from '../errors/sonde-error.js';
import { applyLicense, applyTrust, seedKeyring } from './apply-extras.js';
import type { EngineContext, EngineOptions } from './context.js';
import { crashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import { probeFacts, probeModel, recordModel } from './facts.js';
import { DEFAULT_HEALTH, checkHealth } from './health.js';
import { Journal, type Deployment, type Release } from './journal.js';
import { rollbackTarget, stageRollback } from './rollback-stage.js';
import { pickRecipientKey, storeRecipientKey, storedRecipientKeys } from './probe-keys.js';
import { layoutOf, slotDir } from './layout.js';
import { MAX_RESUMES, RESUME, isOutcome, next, type Event, type State } from './machine.js';
import { planInstall, type InstallPlan } from './plan.js';
import { checkPolicy, requiredBytes } from './policy.js';
import { applyRetention, writeReceipt } from './receipts.js';
import { readReleaseInfo } from './release-info.js';
import { isDiskFull, keepReserve, releaseReserve } from './reserve.js';
import { ProcessRunner } from './runner/process-runner.js';
import { DirSlotBackend } from './slots/dir-backend.js';
import { stageSlot } from './stage.js';
import { switchRelease, undo } from './switch.js';
import { readConfig } from './facts.js';

/**
 * The install engine: runs a deployment through the state machine of machine.ts, persisting each
 * state before its action (STYLE.md, "Persist, then act"), and recovers an unfinished one after a
 * crash following the RESUME table. One install at a time, guarded by a lock file.
 */
export const AGENT_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  }
})();

export interface InstallOutcome {
  readonly deployment: Deployment;
  readonly committed: boolean;
}

/** What the actions of one run keep in memory (never needed after a crash: see RESUME). */
interface RunMemory {
  /** A rollback to the previous release runs the same machine without a pack. */
  rollback?: 'pending' | { current: Release; previous: Release };
  pack?: VerifiedPack;
  plan?: InstallPlan;
  payloadsDir?: string;
}

let lastIdMs = 0;

function newDeploymentId(): string {
  // Sorts by time, so receipts and snapshots sort by time too and retention keeps the newest:
  // milliseconds, strictly increasing in this process, since attempts often share a second.
  const ms = Math.max(Date.now(), lastIdMs + 1);
  lastIdMs = ms;
  return `${new Date(ms).toISOString().replace(/[-:.]/g, '').replace('T', '-').slice(0, 18)}-${randomBytes(4).toString('hex')}`;
}

export class Engine {
  private constructor(private readonly ctx: EngineContext) {}

  static async open(options: EngineOptions): Promise<Engine> {
    const layout = layoutOf(options.root, options.state);
    for (const d of [layout.root, layout.state, layout.slotsDir, layout.dataDir, layout.etc, layout.run]) await mkdir(d, { recursive: true });
    const journal = Journal.open(layout);
    const ctx: EngineContext = {
      layout,
      journal,
      slots: new DirSlotBackend(layout),
      runner: new ProcessRunner(layout),
      options,
      health: { ...DEFAULT_HEALTH, ...options.health },
      retain: options.retain ?? 3,
    };
    return new Engine(ctx);
  }

  get context(): EngineContext {
    return this.ctx;
  }

  close(): void {
    this.ctx.journal.close();
  }

  /** Runs `fn` holding the install lock; a lock left by a dead agent is taken over. */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = this.ctx.layout.lock;
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(lock, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
          throw new UpdateError('INSTALL_LOCKED', 'another install is running on this probe', { cause: e });
        }
        const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
        let alive = false;
        if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid) {
          try {
            process.kill(holder, 0);
            alive = true;
          } catch {
            alive = false;
          }
        }
        if (alive) throw new UpdateError('INSTALL_LOCKED', `another install (pid ${holder}) is running on this probe`);
        await rm(lock, { force: true });
      }
    }
    try {
      await keepReserve(this.ctx.layout);
      return await fn();
    } finally {
      try {
        unlinkSync(lock);
      } catch {
        // already gone
      }
    }
  }

  /** Finishes or rolls back a deployment a crash left unfinished. */
  async recover(): Promise<Deployment | null> {
    return this.locked(() => this.recoverLocked());
  }

  private async recoverLocked(): Promise<Deployment | null> {
    const d = this.ctx.journal.unfinished();
    if (!d) return null;
    const resumed = this.ctx.journal.update(d.id, { resumeCount: d.resumeCount + 1 });
    if (resumed.resumeCount > MAX_RESUMES) {
      // A crash loop: stop acting, record it, and leave the probe as it stands.
      // The receipt before the end time, as in finish().
      const endedAt = new Date().toISOString();
      const gaveUp = this.ctx.journal.update(d.id, { errorCode: 'INSTALL_INTERRUPTED', errorMessage: `gave up after ${MAX_RESUMES} restarts in state ${d.state}` });
      await writeReceipt(this.ctx, { ...gaveUp, endedAt });
      return this.ctx.journal.update(d.id, { endedAt });
    }
    if (RESUME[d.state] === 'roll-back') {
      const to = next(d.state, 'interrupted');
      const moved = this.ctx.journal.transition(d.id, d.state, 'interrupted', to, {
        errorCode: 'INSTALL_INTERRUPTED',
        errorMessage: `the agent stopped during ${d.state}; ${to === 'failed' ? 'nothing was switched' : 'rolled back to the previous release'}`,
      });
      return this.run(moved, {});
    }
    return this.run(resumed, {});
  }

  async install(packPath: string): Promise<InstallOutcome> {
    return this.locked(async () => {
      await this.recoverLocked();
      const before = await probeFacts(this.ctx);
      const d0 = this.ctx.journal.create(newDeploymentId(), 'unknown', packPath, before);
      crashPoint('received:persisted');
      const d = await this.run(d0, {});
      return { deployment: d, committed: d.state === 'committed' && d.errorCode === null };
    });
  }

  /**
   * Starts the active release's app when it is not running and no install is under way: after a
   * power cut or a container start, nothing else would (the app outlives an agent restart, not a
   * reboot). Returns true when it started the app.
   */
  async ensureAppRunning(): Promise<boolean> {
    return this.locked(async () => {
      if (this.ctx.journal.unfinished()) return false;
      const active = await this.ctx.slots.active();
      if (active === null || (await this.ctx.runner.running()) !== null) return false;
      await this.ctx.runner.start(join(this.ctx.layout.slotsDir, active));
      return true;
    });
  }

  /** Returns to the previous committed release (see rollback-stage.ts). */
  async rollback(): Promise<InstallOutcome> {
    return this.locked(async () => {
      await this.recoverLocked();
      const before = await probeFacts(this.ctx);
      // Journaled from the start, so a refused rollback leaves its receipt like any attempt.
      const d0 = this.ctx.journal.create(newDeploymentId(), 'rollback', 'rollback to the previous release', before);
      const d = await this.run(d0, { rollback: 'pending' });
      return { deployment: d, committed: d.state === 'committed' && d.errorCode === null };
    });
  }

  /** Drives the machine from `d`'s persisted state until an outcome is finished. */
  private async run(start: Deployment, mem: RunMemory): Promise<Deployment> {
    let d = start;
    for (;;) {
      const t0 = Date.now();
      let event: Event;
      try {
        event = await this.act(d, mem);
      } catch (caught) {
        let e = caught;
        if (await isDiskFull(e, this.ctx.layout)) {
          // The disk ran full after the free-space check passed: the reserve gives the journal,
          // the receipt and the undo the room to end this deployment cleanly.
          await releaseReserve(this.ctx.layout);
          if (!isSondeError(e)) e = new UpdateError('DISK_FULL', `the disk ran full in state ${d.state}: ${(e as Error).message}`, { cause: e });
        }
        if (!isSondeError(e)) throw e;
        d = this.ctx.journal.update(d.id, { errorCode: e.code, errorMessage: e.message });
        event = e.code.startsWith('POLICY_') || e.code === 'ALREADY_INSTALLED' ? 'refused' : 'error';
      }
      d = this.ctx.journal.update(d.id, { timings: { [d.state]: (d.timings[d.state] ?? 0) + Date.now() - t0 } });
      if (isOutcome(d.state)) return d;
      const to = next(d.state, event);
      d = this.ctx.journal.transition(d.id, d.state, event, to);
      this.ctx.options.onProgress?.({ deploymentId: d.id, state: to, ...(d.errorCode ? { detail: d.errorCode } : {}) });
    }
  }

  /** The action of each state; it returns the event that the table turns into the next state. */
  private async act(d: Deployment, mem: RunMemory): Promise<Event> {
    const state: State = d.state;
    switch (state) {
      case 'received':
        return this.receive(d, mem);
      case 'verified':
        crashPoint('verified:persisted');
        return this.stage(d, mem);
      case 'staged':
        crashPoint('staged:persisted');
        return 'ok';
      case 'switching':
        crashPoint('switch:persisted');
        await switchRelease(this.ctx, d);
        return 'ok';
      case 'trial':
        crashPoint('trial:persisted');
        return this.trial(d);
      case 'committed':
        crashPoint('commit:persisted');
        await this.commit(d);
        return 'done';
      case 'rolling-back':
        crashPoint('rollback:persisted');
        await undo(this.ctx, d);
        return 'done';
      case 'rolled-back':
      case 'failed':
        await undo(this.ctx, d);
        await this.finish(d);
        return 'done';
    }
  }

  private async receive(d: Deployment, mem: RunMemory): Promise<Event> {
    const { layout, journal, options } = this.ctx;
    if (mem.rollback) {
      // The previous release was verified when it was installed; what is checked is whether it can come back.
      const target = rollbackTarget(this.ctx);
      journal.update(d.id, { product: target.previous.product, toVersion: target.previous.version, securityVersion: target.previous.securityVersion, packCreatedAt: target.previous.packCreatedAt });
      mem.rollback = target;
      return 'ok';
    }
    await seedKeyring(this.ctx, options.keyring);
    if (options.recipientKey) await storeRecipientKey(layout, options.recipientKey);
    const keyring = await loadKeyring(layout.keyring);
    const pack = await verifyPack(await readPack(d.packPath), keyring);
    const m = pack.manifest;
    journal.update(d.id, {
      kind: m.kind,
      product: m.product,
      toVersion: m.version,
      securityVersion: m.securityVersion,
      packCreatedAt: m.createdAt,
    });
    // The pack's identity: the sha256 of its signed manifest.
    const packId = createHash('sha256').update(pack.manifestBytes).digest('hex');
    journal.setPackId(d.id, packId);
    const current = journal.releases()[0] ?? null;
    const model = await probeModel(layout, options.model);
    const dbBytes = (await stat(layout.db).catch(() => null))?.size ?? 0;
    const fs = statfsSync(layout.root);
    const busy = await readFile(layout.inhibit, 'utf8').then((t) => t.trim() || 'busy', () => null);
    try {
      checkPolicy({
        manifest: m,
        // A fresh probe has no model yet: it adopts the one its first product is built for.
        model,
        installed: current ? { product: current.product, version: current.version, securityVersion: current.securityVersion } : null,
        securityFloor: journal.securityFloor(),
        newestCreatedAtSameSecurity: journal.newestCreatedAt(m.securityVersion),
        agentVersion: AGENT_VERSION,
        freeBytes: fs.bavail * fs.bsize,
        requiredBytes: requiredBytes(m, dbBytes),
        busyReason: busy,
        maintenanceWindow: options.maintenanceWindow ?? null,
        now: new Date(),
      });
    } catch (e) {
      await pack.close();
      throw e;
    }
    mem.pack = pack;
    return 'ok';
  }

  private async stage(d: Deployment, mem: RunMemory): Promise<Event> {
    const { layout, journal } = this.ctx;
    if (mem.rollback && mem.rollback !== 'pending') {
      await stageRollback(this.ctx, d, mem.rollback.current, mem.rollback.previous);
      return 'ok';
    }
    const pack = mem.pack;
    if (!pack) throw new UpdateError('INSTALL_INTERRUPTED', 'the verified pack is no longer open');
    const m = pack.manifest;
    const active = await this.ctx.slots.active();
    const plan = planInstall(m, active);
    mem.plan = plan;
    journal.update(d.id, plan.kind === 'slot' ? { activeSlot: active, targetSlot: plan.targetSlot } : { activeSlot: active });
    const payloadsDir = join(layout.staging, d.id, 'payloads');
    await rm(join(layout.staging, d.id), { recursive: true, force: true });
    await mkdir(join(layout.staging, d.id), { recursive: true, mode: 0o700 });
    const candidates = [...(this.ctx.options.recipientKey ? [this.ctx.options.recipientKey] : []), ...(await storedRecipientKeys(layout))];
    const key = m.encryption ? pickRecipientKey(m, candidates) : undefined;
    await extractPack(pack, { mode: 'extract', staging: payloadsDir, flushLargeFiles: true, ...(key ? { key } : {}) });
    crashPoint('stage:payloads-extracted');
    mem.payloadsDir = payloadsDir;
    switch (plan.kind) {
      case 'license':
        await applyLicense(this.ctx, payloadsDir);
        return 'applied';
      case 'trust':
        await applyTrust(this.ctx, pack, payloadsDir);
        return 'applied';
      case 'slot': {
        if (m.kind === 'product') await recordModel(layout, m.compatible[0]!);
        await stageSlot(this.ctx, journal.get(d.id)!, m, plan, payloadsDir);
        return 'ok';
      }
    }
  }

  private async trial(d: Deployment): Promise<Event> {
    const { layout, runner } = this.ctx;
    const target = slotDir(layout, d.targetSlot!);
    const release = await readReleaseInfo(join(target, 'app'));
    const config = (await readConfig(layout.config)) ?? {};
    const port = typeof config.port === 'number' ? config.port : NaN;
    await runner.start(target);
    crashPoint('trial:app-started');
    if (!Number.isInteger(port)) throw new UpdateError('HEALTH_CHECK_FAILED', 'config.json names no port for the health endpoint');
    const verdict = await checkHealth(
      { port, path: release.health?.path ?? '/health', slotDir: target, alive: async () => (await runner.running()) !== null },
      this.ctx.health,
    );
    this.ctx.journal.update(d.id, { timings: { healthChecks: verdict.checks } });
    if (verdict.healthy) return 'healthy';
    // A dead app says why on its way out: quote its last lines (the receipt, the server's event).
    const words = verdict.exited ? await runner.lastWords(600) : null;
    const said = words === null ? '' : `; its last output: ${words.split('\n').slice(-4).join(' / ')}`;
    this.ctx.journal.update(d.id, { errorCode: 'HEALTH_CHECK_FAILED', errorMessage: `the new release failed its health check: ${verdict.reason}${said}` });
    return 'unhealthy';
  }

  private async commit(d: Deployment): Promise<void> {
    const { journal, slots } = this.ctx;
    if (d.targetSlot !== null && d.kind !== 'license' && d.kind !== 'trust') {
      // markGood is a no-op for a rollback target, which is good already.
      await slots.markGood(d.targetSlot, d.toVersion ?? 'unknown');
      crashPoint('commit:slot-marked-good');
      const facts = await probeFacts(this.ctx);
      journal.recordRelease({
        deploymentId: d.id,
        product: d.product ?? 'unknown',
        version: d.toVersion ?? 'unknown',
        securityVersion: d.securityVersion ?? 0,
        packCreatedAt: d.packCreatedAt ?? new Date(0).toISOString(),
        slot: d.targetSlot,
        dbVersion: facts.dbVersion,
        configVersion: facts.configVersion,
        committedAt: new Date().toISOString(),
      });
    }
    await rm(join(this.ctx.layout.staging, d.id), { recursive: true, force: true });
    await this.finish(d);
    crashPoint('commit:receipt-written');
    await applyRetention(this.ctx);
  }

  /**
   * Ends a deployment: facts after, receipt, end time, in that order. A crash before the end time
   * is recorded resumes the outcome, which writes the receipt again; recording the end first
   * would leave an ended deployment without its receipt after a crash in between.
   */
  private async finish(d: Deployment): Promise<void> {
    const after = await probeFacts(this.ctx);
    const endedAt = new Date().toISOString();
    await writeReceipt(this.ctx, { ...this.ctx.journal.update(d.id, { after }), endedAt });
    this.ctx.journal.update(d.id, { endedAt });
  }
}

