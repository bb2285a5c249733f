import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import type { Command } from '../../../base/src/protocol/messages.js';
import type { Outbox } from '../link/outbox.js';
import semver from 'semver';
import { AGENT_VERSION } from '../update/agent-version.js';
import { awaitsAgentRestart, type InstallOutcome } from '../update/engine.js';
import type { Deployment } from '../update/journal.js';
import { committedPrerequisite } from './agent-trial.js';
import type { Outcome } from '../update/machine.js';
import type { CommandStore } from './commands.js';
import type { AgentConfig } from './config.js';
import type { Credentials } from './credentials.js';
import { downloadPath, fetchPack } from './fetch-pack.js';
import type { Installer } from './installer.js';

/** The commands that run under the install lock, one at a time. */
export type QueuedCommand = Extract<Command, { type: 'install' | 'rollback' }>;

/** How many install commands may wait behind the running one before more are refused. */
const MAX_QUEUED = 1;

/** What the queue needs from the daemon. */
export interface QueueContext {
  readonly commands: CommandStore;
  readonly installer: Installer;
  readonly config: AgentConfig;
  readonly creds: Credentials;
  readonly log: Logger;
  readonly staging: string;
  readonly event: (e: Parameters<Outbox['add']>[0]) => void;
  readonly reportOutcome: (deploymentId: string, outcome: Outcome | null, code: string | null, message: string | null, version: string | null, commandId?: string) => void;
  /** Installs run one at a time, whoever asks (a command, the FTP drop). */
  readonly withInstallLock: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly busy: () => boolean;
}

/** Why a download stopped: the daemon is stopping (parked, resumed at the next start) or the server cancelled it. */
class Stopping extends Error {}
class CancelledByServer extends Error {}

/**
 * The server's install and rollback commands on the probe (issue 4; cancel, issue 23): accepted
 * into a queue of one behind the running install (more are refused, COMMAND_BUSY), run one at a
 * time under the install lock, reported against their command. A `cancel` removes a queued
 * command, or stops a download (its partial file removed); once the pack is downloaded the
 * install runs to its outcome, which is what the server is told.
 */
export class CommandQueue {
  private queue: QueuedCommand[] = [];
  private current: { commandId: string; phase: 'download' | 'install'; abort: AbortController } | null = null;
  private stopped = false;

  constructor(private readonly x: QueueContext) {}

  /** The command whose install runs now (its deployment is tied to it as soon as it exists). */
  get runningCommand(): string | null {
    return this.current?.commandId ?? null;
  }

  /** A new command from the server: accepted and queued, or refused while two are ahead. */
  take(c: QueuedCommand): void {
    if (this.stopped) return;
    if (this.queue.length >= MAX_QUEUED && (this.x.busy() || this.current)) {
      this.x.commands.accept(c, 'refused');
      this.x.event({ type: 'command-refused', commandId: c.commandId, code: 'COMMAND_BUSY', message: 'another install is running and one is already queued' });
      return;
    }
    this.x.commands.accept(c, 'queued');
    this.x.event({ type: 'command-accepted', commandId: c.commandId, ...(this.x.busy() ? { message: 'queued behind the running install' } : {}) });
    this.enqueue(c, false);
  }

  /**
   * A command accepted before a restart, with the deployment it last ran. One whose deployment
   * ended before the agent could record so (killed between the two) is reported, not run again:
   * run again, it would be refused as already installed, which is not what happened.
   */
  resume(c: QueuedCommand, last: Deployment | null): void {
    if (last && last.endedAt !== null && last.errorCode !== 'INSTALL_INTERRUPTED' && !committedPrerequisite(last, c, this.x.staging)) {
      this.x.commands.set(c.commandId, 'done', last.id);
      this.x.reportOutcome(last.id, last.outcome, last.errorCode, last.errorMessage, last.toVersion, c.commandId);
      return;
    }
    this.enqueue(c, true);
  }

  cancel(target: string): void {
    const queued = this.queue.findIndex((q) => q.commandId === target);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.x.commands.set(target, 'cancelled');
      this.x.event({ type: 'command-refused', commandId: target, code: 'COMMAND_CANCELLED', message: 'cancelled by the server before it started' });
      this.x.log.info({ commandId: target }, 'queued command cancelled');
    } else if (this.current?.commandId === target && this.current.phase === 'download') {
      this.current.abort.abort(new CancelledByServer('cancelled by the server'));
    } else if (this.current?.commandId === target) {
      // The pack is verified and the install under way: stopping it half-way is what the engine
      // exists to avoid. It runs to its outcome, and that outcome is reported.
      this.x.log.info({ commandId: target }, 'cancel arrived after the install started; it runs to its outcome');
    } else {
      this.x.log.warn({ code: 'COMMAND_UNKNOWN', target }, 'cancel for no known command');
    }
  }

  /** SIGTERM: a download is parked (its .part kept, the command resumed at the next start), the queue dropped. */
  stop(): void {
    this.stopped = true;
    this.current?.abort.abort(new Stopping('stopping'));
    this.queue = [];
  }

  private enqueue(c: QueuedCommand, resumed: boolean): void {
    this.queue.push(c);
    void this.x.withInstallLock(async () => {
      const idx = this.queue.findIndex((q) => q.commandId === c.commandId);
      if (idx < 0) return; // cancelled while queued
      this.queue.splice(idx, 1);
      // Ended while it waited (a new agent on trial resumed it, then committed the agent update
      // that was this command's own pack): nothing left to run.
      const status = this.x.commands.get(c.commandId)?.status;
      if (status !== 'queued' && status !== 'running') return;
      if (c.type === 'install') await this.runInstall(c, resumed);
      else await this.runRollback(c);
    });
  }

  private async runInstall(c: Extract<Command, { type: 'install' }>, resumed: boolean): Promise<void> {
    const { x } = this;
    const abort = new AbortController();
    this.current = { commandId: c.commandId, phase: 'download', abort };
    x.commands.set(c.commandId, 'running');
    try {
      const deps = { staging: x.staging, config: x.config, creds: x.creds, log: x.log, event: x.event };
      // The pack needs a newer agent: the agent update the rollout names goes first. The agent
      // restarts into it; the new agent, once committed, resumes this command with the pack.
      const first = c.agentFirst;
      if (first && semver.valid(AGENT_VERSION) && semver.lt(AGENT_VERSION, first.minAgentVersion)) {
        x.log.info({ commandId: c.commandId, agent: AGENT_VERSION, needs: first.minAgentVersion }, 'the pack needs a newer agent: installing the agent update first');
        const agentPack = await fetchPack({ ...c, pack: first.pack }, resumed, abort.signal, deps);
        this.current.phase = 'install';
        const d = (await x.installer.install(agentPack)).deployment;
        if (awaitsAgentRestart(d)) {
          x.commands.set(c.commandId, 'running', d.id);
          return;
        }
        // The agent update did not install: that is this command's outcome.
        x.commands.set(c.commandId, 'done', d.id);
        x.reportOutcome(d.id, d.outcome, d.errorCode, d.errorMessage, d.toVersion, c.commandId);
        return;
      }
      const dest = await fetchPack(c, resumed, abort.signal, deps);
      this.current.phase = 'install';
      const outcome: InstallOutcome = await x.installer.install(dest);
      const d = outcome.deployment;
      if (awaitsAgentRestart(d)) {
        // An agent pack: the new agent reports the outcome once it has confirmed itself.
        x.commands.set(c.commandId, 'running', d.id);
        return;
      }
      x.commands.set(c.commandId, 'done', d.id);
      x.reportOutcome(d.id, d.outcome, d.errorCode, d.errorMessage, d.toVersion, c.commandId);
      await rm(dest, { force: true });
    } catch (e) {
      const reason: unknown = abort.signal.aborted ? abort.signal.reason : null;
      if (reason instanceof Stopping) {
        // Parked: the .part stays, the command stays queued, the next start resumes it.
        x.commands.set(c.commandId, 'queued');
        return;
      }
      if (reason instanceof CancelledByServer) {
        await rm(`${downloadPath(x.staging, c.pack.sha256)}.part`, { force: true });
        x.commands.set(c.commandId, 'cancelled');
        x.event({ type: 'download-failed', commandId: c.commandId, code: 'COMMAND_CANCELLED', message: 'cancelled by the server during the download; the partial file was removed' });
        x.log.info({ commandId: c.commandId }, 'download cancelled by the server');
        return;
      }
      const { code, message } = reportable(e, this.current?.phase === 'install' ? 'install' : 'download');
      x.commands.set(c.commandId, 'done');
      x.event({ type: 'download-failed', commandId: c.commandId, code, message });
      if (!isSondeError(e)) x.log.error({ err: (e as Error).stack }, 'install command failed');
    } finally {
      this.current = null;
    }
  }

  /**
   * A rollback the server asked for: the engine's own rollback (`sonde agent rollback`), with the
   * same refusals, in an installer process, reported like an install against the command.
   */
  private async runRollback(c: Extract<Command, { type: 'rollback' }>): Promise<void> {
    const { x } = this;
    this.current = { commandId: c.commandId, phase: 'install', abort: new AbortController() };
    x.commands.set(c.commandId, 'running');
    try {
      const d = (await x.installer.rollback()).deployment;
      x.commands.set(c.commandId, 'done', d.id);
      x.reportOutcome(d.id, d.outcome, d.errorCode, d.errorMessage, d.toVersion, c.commandId);
    } catch (e) {
      const { code, message } = reportable(e, 'rollback');
      x.commands.set(c.commandId, 'refused');
      x.event({ type: 'command-refused', commandId: c.commandId, code, message });
      if (!isSondeError(e)) x.log.error({ err: (e as Error).stack }, 'rollback command failed');
    } finally {
      this.current = null;
    }
  }
}

/**
 * What the server is told about a failure. One the agent knows keeps its code and message (a
 * SondeError's message names files and codes, never secret values). One it does not know is a
 * code and a fixed sentence: its message could quote anything, and the server is off the probe.
 */
function reportable(e: unknown, what: 'download' | 'install' | 'rollback'): { code: string; message: string } {
  if (isSondeError(e)) return { code: e.code, message: e.message.slice(0, 1000) };
  return { code: what === 'download' ? 'DOWNLOAD_FAILED' : 'INSTALL_INTERNAL_ERROR', message: `the ${what} failed on an error the agent does not know; its log has the details` };
}
