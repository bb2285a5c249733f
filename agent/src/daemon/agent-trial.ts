import type { Logger } from 'pino';
import { agentHome, readTrial, runningOnTrial, type Confirm } from '../update/self-update.js';
import type { Engine } from '../update/engine.js';
import type { Deployment } from '../update/journal.js';
import type { Command } from '../../../base/src/protocol/messages.js';
import type { CommandStore } from './commands.js';
import { downloadPath } from './fetch-pack.js';
import type { Installer } from './installer.js';

/**
 * The daemon's side of an agent updating itself (docs/self-update.md). When this process is the
 * new agent on trial (the launcher started it for an unfinished agent deployment), it must prove
 * itself before the launcher's window ends: by reaching the fleet server (`confirm=connect`: the
 * old agent was connected when it installed it) or, when the old one was offline, by running
 * `settleMs` and passing a self-check of its own state. Then it commits through the installer
 * (engine.confirmAgent). Until then it installs nothing.
 *
 * What it never does is decide that it failed: the launcher does that, by itself, whatever this
 * code does (crash, hang, silence).
 */
export class AgentTrial {
  private settled: Promise<Deployment | null> | null = null;
  private resolveSettled: ((d: Deployment | null) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly installer: Installer,
    private readonly engine: Engine,
    private readonly log: Logger,
    readonly deployment: Deployment,
    readonly confirm: Confirm,
    private readonly settleMs: number,
  ) {}

  /** The trial this process runs, or null (no agent deployment open, or this is not its agent). */
  static async detect(installer: Installer, engine: Engine, log: Logger, settleMs: number): Promise<AgentTrial | null> {
    const d = engine.context.journal.unfinished();
    if (!d || d.kind !== 'agent' || !runningOnTrial(d)) return null;
    const trial = await readTrial(agentHome(engine.context.layout));
    return new AgentTrial(installer, engine, log, d, trial?.confirm ?? 'connect', settleMs);
  }

  /** Resolves with the committed deployment once the new agent has confirmed itself. */
  get done(): Promise<Deployment | null> {
    this.settled ??= new Promise((resolve) => (this.resolveSettled = resolve));
    return this.settled;
  }

  /**
   * Starts the self-check clock when that is how this trial ends, and holds the install lock until
   * the trial is over (the daemon's installs wait behind it); then its outcome is reported.
   */
  start(withInstallLock: (fn: () => Promise<void>) => Promise<void>, report: (d: Deployment) => void): void {
    void withInstallLock(async () => {
      const d = await this.done;
      if (d) report(d);
    });
    this.log.warn({ deploymentId: this.deployment.id, version: this.deployment.toVersion, confirm: this.confirm }, 'this agent is on trial');
    if (this.confirm === 'self-check') {
      this.timer = setTimeout(() => void this.selfCheck(), this.settleMs);
      this.timer.unref();
    }
  }

  /** The link reached the server: that is the proof a connected probe's new agent owes. */
  onConnected(): void {
    if (this.confirm === 'connect') void this.commit('reached the fleet server');
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  /**
   * An offline probe's new agent: it has run `settleMs` without crashing, its agent.db passes
   * SQLite's integrity check, and its journal and outbox read. Anything else fails the trial by
   * silence: the launcher's window ends it.
   */
  private async selfCheck(): Promise<void> {
    try {
      const db = this.engine.context.journal.connection;
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`agent.db quick_check: ${String(check)}`);
      db.prepare('SELECT count(*) FROM outbox').get();
      if (!this.engine.context.journal.unfinished()) throw new Error('the agent deployment is no longer open');
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'the new agent failed its self-check; the launcher will take it back');
      return;
    }
    await this.commit('passed its offline self-check');
  }

  private committing = false;

  private async commit(why: string): Promise<void> {
    if (this.committing) return;
    this.committing = true;
    try {
      const d = await this.installer.confirmAgent();
      this.log.info({ deploymentId: d?.id ?? null, outcome: d?.outcome ?? null, why }, 'the new agent confirmed itself');
      this.stop();
      void this.done;
      this.resolveSettled?.(d);
    } catch (e) {
      this.committing = false;
      this.log.error({ code: (e as { code?: string }).code, err: (e as Error).message }, 'the new agent could not commit itself');
    }
  }
}

/** `d` is the agent update that `command` needed first (its `agentFirst`), and it committed: the command goes on with its own pack. */
export function committedPrerequisite(d: Deployment, command: Command, staging: string): boolean {
  const first = command.type === 'install' ? command.agentFirst : undefined;
  return d.outcome === 'committed' && first !== undefined && d.packPath === downloadPath(staging, first.pack.sha256);
}

/**
 * The command an agent deployment's outcome is reported against: its command, unless it was the
 * agent update that command needed first and it committed (the agent's outcome is then reported
 * on its own, and the command's own pack installs next).
 */
export function agentOutcomeCommand(d: Deployment, commands: CommandStore, staging: string): string | undefined {
  const c = commands.pending().find((x) => x.deploymentId === d.id);
  return c && !committedPrerequisite(d, c.command, staging) ? c.command.commandId : undefined;
}
