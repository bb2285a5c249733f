import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { EngineContext, EngineOptions } from './context.js';
import { tryPidLock } from '../../../base/src/os/pid-lock.js';
import { crashPoint } from './crash.js';
import type { RunMemory } from './engine-steps.js';
import { UpdateError } from './errors.js';
import { probeFacts } from './facts.js';
import { DEFAULT_HEALTH } from './health.js';
import { Journal, succeeded, type Deployment } from './journal.js';
import { layoutOf } from './layout.js';
import { MAX_RESUMES, RESUME, next } from './machine.js';
import { writeReceipt } from './receipts.js';
import { keepReserve } from './reserve.js';
import { ReleaseRunner } from './runner/release-runner.js';
import { DirSlotBackend } from './slots/dir-backend.js';
import type { SlotBackend } from './slots/backend.js';
import { BlockSlotBackend } from './slots/block-backend.js';
import { readSlotFile } from './slots/slot-config.js';
import { preloadReadPasses } from '../../../pack/src/index.js';

/**
 * The install engine: runs a deployment through the state machine of machine.ts, persisting each
 * state before its action (STYLE.md, "Persist, then act"), and recovers an unfinished one after a
 * crash following the RESUME table. One install at a time, guarded by a lock file.
 */
export { AGENT_VERSION } from './agent-version.js';

export interface InstallOutcome {
  readonly deployment: Deployment;
  readonly committed: boolean;
}

/** An agent pack's install ends unfinished, on trial: the agent must restart into the launcher. */
export function awaitsAgentRestart(d: Deployment): boolean {
  return d.kind === 'agent' && d.outcome === null && (d.state === 'switching' || d.state === 'trial');
}

/** A system install on block slots ends unfinished, on trial: the probe reboots into the new slot (system-install.ts). */
export function awaitsReboot(d: Deployment): boolean {
  return d.kind !== 'agent' && d.outcome === null && d.state === 'trial' && d.stage.rebootFrom !== undefined;
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

  /**
   * `readOnly` (status, history): nothing is created, neither folders nor agent.db; a probe that
   * has no agent.db yet is read through an empty journal in memory.
   */
  static async open(options: EngineOptions, opts: { readOnly?: boolean } = {}): Promise<Engine> {
    const layout = layoutOf(options.root, options.state);
    if (!opts.readOnly) for (const d of [layout.root, layout.state, layout.slotsDir, layout.dataDir, layout.etc, layout.run]) await mkdir(d, { recursive: true });
    const slotFile = await readSlotFile(layout.slotConfig);
    let slots: SlotBackend = new DirSlotBackend(layout);
    if (slotFile?.slots[0]!.type === 'block') {
      const block = new BlockSlotBackend(layout, slotFile);
      await block.refresh();
      slots = block;
    }
    const journal = opts.readOnly && !existsSync(layout.journal) ? new Journal(':memory:') : Journal.open(layout);
    const ctx: EngineContext = {
      layout,
      journal,
      slots,
      runner: new ReleaseRunner(layout),
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
    let lock;
    try {
      // A zombie counts as dead: an installer process whose daemon died first is one until PID 1
      // reaps it (daemon/installer.ts).
      lock = tryPidLock(this.ctx.layout.lock, { selfIsStale: true });
    } catch (e) {
      throw new UpdateError('INSTALL_LOCKED', 'another install is running on this probe', { cause: e });
    }
    if (!lock.taken) throw new UpdateError('INSTALL_LOCKED', `another install (pid ${lock.holder}) is running on this probe`);
    try {
      await keepReserve(this.ctx.layout);
      return await fn();
    } finally {
      lock.release();
    }
  }

  /** Finishes or rolls back a deployment a crash left unfinished. */
  async recover(): Promise<Deployment | null> {
    return this.locked(() => this.recoverLocked());
  }

  private async recoverLocked(): Promise<Deployment | null> {
    const d = this.ctx.journal.unfinished();
    if (!d) return null;
    if (d.kind === 'agent' && (d.state === 'switching' || d.state === 'trial')) {
      // An agent updating itself restarts on purpose: its trial is judged from the launcher's
      // files (self-update.ts), not rolled back as an interruption.
      const { agentHome, judgeTrial } = await import('./self-update.js');
      const verdict = await judgeTrial(agentHome(this.ctx.layout), d);
      // The new agent on trial: it confirms itself once it has reached the server (confirmAgent).
      if (verdict.kind === 'mine') return null;
      // The trial is written and the launcher will run it (the installer died right after the
      // switch): the agent hands over, as if the install had returned.
      if (verdict.kind === 'pending' && process.env.SONDE_AGENT_LAUNCHER === '1') return d;
      if (verdict.kind !== 'not-written') {
        const atTrial = d.state === 'switching' ? this.ctx.journal.transition(d.id, d.state, 'ok', next(d.state, 'ok')) : d;
        return this.run(atTrial, { verdict });
      }
    }
    const resumed = this.ctx.journal.update(d.id, { resumeCount: d.resumeCount + 1 });
    if (resumed.resumeCount > MAX_RESUMES) {
      // A crash loop: stop acting, record it through the table, and leave the probe as it stands.
      // The receipt before the end time, as in finish().
      const gaveUp = this.ctx.journal.transition(d.id, d.state, 'gave-up', next(d.state, 'gave-up'), {
        errorCode: 'INSTALL_INTERRUPTED',
        errorMessage: `gave up after ${MAX_RESUMES} restarts in state ${d.state}`,
      });
      const endedAt = new Date().toISOString();
      await writeReceipt(this.ctx, { ...gaveUp, endedAt });
      return this.ctx.journal.update(d.id, { endedAt });
    }
    if (d.state === 'trial' && this.ctx.slots.rebootsToSwitch && d.stage.rebootFrom !== undefined) {
      // Block slots: the agent asked for the reboot into the new slot; which slot booted decides
      // (system-install.ts, judgeBoot), as the trial goes on.
      return this.run(resumed, {});
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
      this.refuseDuringAgentTrial();
      await this.refuseBeforeReboot();
      const before = await probeFacts(this.ctx);
      const d0 = this.ctx.journal.create(newDeploymentId(), 'unknown', packPath, before);
      crashPoint('received:persisted');
      const d = await this.run(d0, {});
      return { deployment: d, committed: succeeded(d) };
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
      await this.confirmBoot();
      const active = await this.ctx.slots.active();
      if (active === null || (await this.ctx.runner.running()) !== null) return false;
      // A block slot runs the release the agent committed there, not whatever a factory flashed.
      if (this.ctx.slots.kind === 'block' && (await this.ctx.slots.info(active)).version === null) return false;
      await this.ctx.runner.start(this.ctx.slots.releaseDir(active));
      return true;
    });
  }

  /**
   * Block slots, like RAUC's mark-good service: the bootloader counts every boot of a slot down;
   * the agent, up and with no install open, marks the booted slot good again (a factory slot
   * too). A slot whose agent never comes up is skipped at the next boot.
   */
  private async confirmBoot(): Promise<void> {
    const slots = this.ctx.slots;
    if (!(slots instanceof BlockSlotBackend)) return;
    const booted = await slots.active();
    if (booted !== null) await slots.confirmBooted(booted);
  }

  /**
   * The new agent, on trial, confirms itself (it reached the server, or passed its self-check):
   * `committed` names its slot, the trial ends, the deployment commits. Null when this process is
   * not an agent on trial.
   */
  async confirmAgent(): Promise<Deployment | null> {
    return this.locked(async () => {
      const d = this.ctx.journal.unfinished();
      if (!d || d.kind !== 'agent' || (d.state !== 'switching' && d.state !== 'trial')) return null;
      const { runningOnTrial } = await import('./self-update.js');
      if (!runningOnTrial(d)) return null;
      const atTrial = d.state === 'switching' ? this.ctx.journal.transition(d.id, d.state, 'ok', next(d.state, 'ok')) : d;
      return this.run(atTrial, { confirm: true });
    });
  }

  /**
   * Block slots: booted in a slot the bootloader will not boot next (a rollback asked for the reboot
   * into the old slot and init is taking the system down), nothing more is written: an install now
   * would target the very slot the probe is about to boot (found by a power cut in the QEMU probe).
   */
  private async refuseBeforeReboot(): Promise<void> {
    if (!this.ctx.slots.rebootsToSwitch) return;
    const [booted, primary] = [await this.ctx.slots.active(), await this.ctx.slots.primary()];
    if (primary !== null && booted !== primary && (await this.ctx.slots.info(booted ?? primary)).health === 'bad') {
      throw new UpdateError('INSTALL_LOCKED', `the probe is rebooting into slot ${primary}; installs wait until it runs there`);
    }
  }

  /** A new agent on trial installs nothing until it has committed itself (or been taken back). */
  private refuseDuringAgentTrial(): void {
    const open = this.ctx.journal.unfinished();
    if (open) throw new UpdateError('INSTALL_LOCKED', `agent ${open.toVersion ?? ''} is on trial (deployment ${open.id}); installs wait until it has committed`);
  }

  /** Returns to the previous committed release (see rollback-stage.ts). */
  async rollback(): Promise<InstallOutcome> {
    return this.locked(async () => {
      await this.recoverLocked();
      this.refuseDuringAgentTrial();
      await this.refuseBeforeReboot();
      const before = await probeFacts(this.ctx);
      // Journaled from the start, so a refused rollback leaves its receipt like any attempt.
      const d0 = this.ctx.journal.create(newDeploymentId(), 'rollback', 'rollback to the previous release', before);
      const d = await this.run(d0, { rollback: 'pending' });
      return { deployment: d, committed: succeeded(d) };
    });
  }

  /** Drives the machine from `d`'s persisted state until an outcome is finished. */
  private async run(start: Deployment, mem: RunMemory): Promise<Deployment> {
    // The steps (verify, stage, migrate, switch, health) are loaded on the first install: a
    // daemon that boots and idles never pays for them (issue 6: probes boot in about a second).
    const [{ Steps }] = await Promise.all([import('./engine-steps.js'), preloadReadPasses()]);
    return new Steps(this.ctx).run(start, mem);
  }
}
