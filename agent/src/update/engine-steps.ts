import { createHash } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { extractPack, loadKeyring, readPack, verifyPack, type VerifiedPack } from '../../../pack/src/index.js';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import { AGENT_VERSION } from './agent-version.js';
import { applyLicense, applyTrust, seedKeyring } from './apply-extras.js';
import type { EngineContext } from './context.js';
import { crashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import { probeFacts, probeModel, readConfig, recordModel } from './facts.js';
import { checkHealth, DEFAULT_HEALTH_PATH } from './health.js';
import type { Deployment, Release } from './journal.js';
import { exists } from '../../../base/src/fs/exists.js';
import { isOutcome, next, type Event, type State } from './machine.js';
import { planInstall, type InstallPlan } from './plan.js';
import { checkPolicy, requiredBytes } from './policy.js';
import { pickRecipientKey, storeRecipientKey, storedRecipientKeys } from './probe-keys.js';
import { applyRetention, writeReceipt } from './receipts.js';
import { readReleaseInfo } from './release-info.js';
import { requirePassed, runHook, slotHooks } from './hooks.js';
import { isDiskFull, releaseReserve } from './reserve.js';
import { rollbackTarget, stageRollback } from './rollback-stage.js';
import { stageSlot } from './stage.js';
import { blockSlots, judgeBoot, needsReboot, reboot, stageSystem } from './system-install.js';
import { switchRelease, undo } from './switch.js';
import { agentHome, agentTarget, commitAgentSlot, judgeTrial, stageAgentBuild, undoAgentUpdate, writeTrial, type TrialVerdict } from './self-update.js';
import { assertNever } from '../../../base/src/errors/sonde-error.js';

/** What the actions of one run keep in memory (never needed after a crash: see RESUME). */
export interface RunMemory {
  /** A rollback to the previous release runs the same machine without a pack. */
  rollback?: 'pending' | { current: Release; previous: Release };
  pack?: VerifiedPack;
  plan?: InstallPlan;
  payloadsDir?: string;
  /** An agent pack: the trial file was written by this run, so the agent hands over (restarts) now. */
  handover?: boolean;
  /** An agent pack: the new agent, on trial, confirms itself (self-update.ts). */
  confirm?: boolean;
  /** An agent pack after a restart: what recovery read of its trial. */
  verdict?: TrialVerdict;
  /** This run finished the undo (`rolling-back`): its outcome state needs no second pass. */
  undone?: boolean;
}

/** The run stops, its deployment unfinished: the agent restarts into the new agent on trial. */
const HANDOVER = 'handover' as const;

/**
 * The actions of the install engine's states (engine.ts owns the lock, recovery and the entry
 * points): verify and check policy, stage and migrate, switch, health-check, commit or roll back,
 * and finish with the receipt. Loaded on the first install only.
 */
export class Steps {
  constructor(private readonly ctx: EngineContext) {}

  /** Drives the machine from `d`'s persisted state until an outcome is finished. */
  async run(start: Deployment, mem: RunMemory): Promise<Deployment> {
    let d = start;
    for (;;) {
      const t0 = Date.now();
      let event: Event | typeof HANDOVER;
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
      if (isOutcome(d.state) && event === 'done' && (await needsReboot(this.ctx))) {
        // Block slots, rolled back from the new slot it booted: back into the slot the bootloader now boots.
        await reboot(this.ctx, d);
        return d;
      }
      if (isOutcome(d.state) || event === HANDOVER) return d;
      const to = next(d.state, event);
      d = this.ctx.journal.transition(d.id, d.state, event, to);
      this.ctx.options.onProgress?.({ deploymentId: d.id, state: to, ...(d.errorCode ? { detail: d.errorCode } : {}) });
    }
  }

  /** The action of each state; it returns the event that the table turns into the next state. */
  private async act(d: Deployment, mem: RunMemory): Promise<Event | typeof HANDOVER> {
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
        if (d.kind === 'agent') await this.switchAgent(d, mem);
        else await switchRelease(this.ctx, d);
        return 'ok';
      case 'trial':
        crashPoint('trial:persisted');
        if (d.kind === 'agent') return this.agentTrial(d, mem);
        if (this.ctx.slots.rebootsToSwitch) {
          // Block slots: the new release runs only once the bootloader booted it (system-install.ts).
          const verdict = await judgeBoot(this.ctx, d);
          if (verdict === 'reboot-now') {
            await reboot(this.ctx, d); // into the target slot, tried once
            return HANDOVER;
          }
          if (verdict === 'fell-back') {
            this.ctx.journal.update(d.id, { errorCode: 'SYSTEM_BOOT_FAILED', errorMessage: `slot ${d.targetSlot} (${d.toVersion ?? ''}) never came up: the bootloader gave up on it and booted slot ${d.activeSlot} again` });
            return 'unhealthy';
          }
        }
        return this.trial(d);
      case 'committed':
        crashPoint('commit:persisted');
        await this.commit(d);
        return 'done';
      case 'rolling-back':
        crashPoint('rollback:persisted');
        await this.undo(d);
        mem.undone = true;
        return 'done';
      case 'rolled-back':
      case 'failed':
        // The undo again (it is idempotent) unless this very run just finished it: a run that
        // starts here (recovery after a crash, a failure before any rollback) cannot know.
        if (mem.undone !== true) await this.undo(d);
        await this.finish(d);
        return 'done';
      default:
        return assertNever(state, 'state');
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
    const pack = await verifyPack(await readPack(d.packPath), keyring, { timeFloor: journal.timeFloor() });
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
        newestAppliedSameKind: m.kind === 'license' || m.kind === 'trust' ? journal.newestApplied(m.kind) : null,
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
    const plan = planInstall(m, active, this.ctx.slots.kind);
    mem.plan = plan;
    if (plan.kind === 'agent') {
      // The agent's slots, not the app's: the previous agent (null: the packaged one) and the next.
      const { previous, target } = await agentTarget(agentHome(layout));
      journal.update(d.id, { activeSlot: previous, targetSlot: target });
    } else {
      journal.update(d.id, plan.kind === 'slot' ? { activeSlot: active, targetSlot: plan.targetSlot } : { activeSlot: active });
    }
    const payloadsDir = join(layout.staging, d.id, 'payloads');
    await rm(join(layout.staging, d.id), { recursive: true, force: true });
    await mkdir(join(layout.staging, d.id), { recursive: true, mode: 0o700 });
    const candidates = [...(this.ctx.options.recipientKey ? [this.ctx.options.recipientKey] : []), ...(await storedRecipientKeys(layout))];
    const key = m.encryption ? pickRecipientKey(m, candidates) : undefined;
    if (plan.kind === 'slot' && plan.system) {
      // The image goes straight into the slot's device, never through staging (system-install.ts).
      await stageSystem(this.ctx, journal.get(d.id)!, m, pack, plan.targetSlot, payloadsDir, key);
      return 'ok';
    }
    const extracted = await extractPack(pack, { mode: 'extract', staging: payloadsDir, flushLargeFiles: true, ...(key ? { key } : {}) });
    crashPoint('stage:payloads-extracted');
    mem.payloadsDir = payloadsDir;
    switch (plan.kind) {
      case 'license':
        await applyLicense(this.ctx, payloadsDir);
        return 'applied';
      case 'trust':
        await applyTrust(this.ctx, pack, payloadsDir);
        return 'applied';
      case 'agent':
        await stageAgentBuild(agentHome(layout), join(payloadsDir, 'agent'), m, journal.get(d.id)!.targetSlot!);
        return 'ok';
      case 'slot': {
        // pre-install: the release's hooks as they will be in the slot (the pack's, or the active
        // release's that a pack without hooks keeps), before anything of the probe is touched.
        const shipped = join(payloadsDir, 'hooks');
        const hooksDir = (await exists(shipped)) ? shipped : plan.inheritActive && active ? join(this.ctx.slots.releaseDir(active), 'hooks') : null;
        const pre = await runHook(this.ctx, journal.get(d.id)!, 'pre-install', { dir: hooksDir, env: { SONDE_STAGING: payloadsDir } });
        requirePassed(pre);
        if (m.kind === 'product') await recordModel(layout, m.compatible[0]!);
        const onDisk = new Map(extracted.payloads.map((p) => [p.entry.name, p.onDisk] as const));
        await stageSlot(this.ctx, journal.get(d.id)!, m, plan, payloadsDir, onDisk);
        return 'ok';
      }
      default:
        return assertNever(plan, 'install plan');
    }
  }

  /** An agent pack's switch: the trial file, for the launcher; the next start runs the new agent. */
  private async switchAgent(d: Deployment, mem: RunMemory): Promise<void> {
    const self = this.ctx.options.selfUpdate ?? { windowSeconds: 300, confirm: 'self-check' as const };
    await writeTrial(agentHome(this.ctx.layout), { slot: d.targetSlot!, previous: d.activeSlot ?? 'packaged', window: self.windowSeconds, confirm: self.confirm });
    mem.handover = true;
  }

  /**
   * An agent pack's trial: the new agent must run and confirm itself; what the launcher's files say
   * decides (self-update.ts, judgeTrial). Right after the switch the run hands over: the daemon
   * restarts into the launcher, and the deployment stays open until the new agent commits or the
   * launcher brings the previous one back, which then records why.
   */
  private async agentTrial(d: Deployment, mem: RunMemory): Promise<Event | typeof HANDOVER> {
    const home = agentHome(this.ctx.layout);
    const verdict = mem.verdict ?? (await judgeTrial(home, d));
    switch (verdict.kind) {
      case 'pending':
        if (mem.handover) return HANDOVER;
        // The trial file is there, yet this agent is not the new one: it was started without the launcher.
        this.ctx.journal.update(d.id, { errorCode: 'AGENT_UPDATE_NOT_STARTED', errorMessage: 'the new agent never ran: the agent restarted without its launcher (sonde-agent-launch), which runs a new agent on trial; the update was withdrawn' });
        return 'unhealthy';
      case 'mine':
        if (!mem.confirm) return HANDOVER;
        await commitAgentSlot(home, d.targetSlot!);
        return 'healthy';
      case 'committed':
        return 'healthy';
      case 'fell-back':
        this.ctx.journal.update(d.id, { errorCode: 'AGENT_UPDATE_ROLLED_BACK', errorMessage: `the new agent ${d.toVersion ?? ''} was taken back by the launcher: ${verdict.reason}` });
        return 'unhealthy';
      case 'not-written':
        this.ctx.journal.update(d.id, { errorCode: 'INSTALL_INTERRUPTED', errorMessage: 'the agent stopped before its trial was written; the previous agent runs' });
        return 'unhealthy';
      default:
        return assertNever(verdict, 'trial verdict');
    }
  }

  private async undo(d: Deployment): Promise<void> {
    if (d.kind === 'agent') {
      await undoAgentUpdate(agentHome(this.ctx.layout), d);
      await rm(join(this.ctx.layout.staging, d.id), { recursive: true, force: true });
    } else {
      // Block slots: the agent's read-only mount of the slot going away first.
      if (d.targetSlot !== null) await blockSlots(this.ctx)?.unmount(d.targetSlot);
      await undo(this.ctx, d);
    }
  }

  private async trial(d: Deployment): Promise<Event> {
    const { layout, runner } = this.ctx;
    const target = this.ctx.slots.releaseDir(d.targetSlot!);
    const release = await readReleaseInfo(join(target, 'app'));
    const config = (await readConfig(layout.config)) ?? {};
    const port = typeof config.port === 'number' ? config.port : NaN;
    const postSwitch = await runHook(this.ctx, d, 'post-switch', { dir: slotHooks(this.ctx, d) });
    requirePassed(postSwitch);
    await runner.start(target);
    crashPoint('trial:app-started');
    if (!Number.isInteger(port)) throw new UpdateError('HEALTH_CHECK_FAILED', 'config.json names no port for the health endpoint');
    const verdict = await checkHealth(
      { port, path: release.health?.path ?? DEFAULT_HEALTH_PATH, slotDir: target, alive: async () => (await runner.running()) !== null, runnerCheck: () => runner.check() },
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
    // The trusted time floor rises with every pack committed (a rollback brings no new pack).
    if (d.kind !== null && d.packCreatedAt !== null) journal.raiseTimeFloor(d.packCreatedAt);
    if ((d.kind === 'license' || d.kind === 'trust') && d.packCreatedAt !== null) journal.recordApplied(d.kind, d.packCreatedAt);
    if (d.targetSlot !== null && d.kind !== 'license' && d.kind !== 'trust' && d.kind !== 'agent') {
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
    // post-commit: the release is committed whatever it says; its run is in the receipt.
    if (d.targetSlot !== null && d.kind !== 'license' && d.kind !== 'trust' && d.kind !== 'agent' && d.kind !== null) await runHook(this.ctx, d, 'post-commit', { dir: slotHooks(this.ctx, d) });
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
