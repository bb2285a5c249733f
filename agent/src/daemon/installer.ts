import { fork } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { SondeError } from '../../../base/src/errors/sonde-error.js';
import { processAlive } from '../../../base/src/os/process-alive.js';
import { awaitsAgentRestart, awaitsReboot, type InstallOutcome } from '../update/engine.js';
import { UpdateError } from '../update/errors.js';
import { succeeded, type Deployment } from '../update/journal.js';
import type { ChildEngineOptions, ChildReply, ChildRequest } from './install-protocol.js';

const HERE = fileURLToPath(import.meta.url);
/** The installer's entry. Tests that run the daemon from its sources (vitest) fork the build's. */
const CHILD = HERE.endsWith('.ts') ? join(dirname(HERE), '../../../dist/agent/src/daemon/install-child.js') : join(dirname(HERE), 'install-child.js');

export type InstallProgress = Extract<ChildReply, { type: 'progress' }>['progress'];

/** An error the installer process raised on purpose, relayed with its code. */
export class RelayedError extends SondeError<string> {
  readonly domain = 'installer';
}

/**
 * The daemon's installs, each run by the engine in a short-lived installer process
 * (install-child.ts) instead of in the daemon. The daemon runs for months; an install reads a
 * pack of hundreds of megabytes, loads the verification and migration code, and leaves V8 with a
 * grown heap it keeps. In a child, all of that ends with the child, and the daemon's memory stays
 * flat across installs (bench/agent-idle).
 *
 * Semantics are the engine's: the child holds the engine's install lock, persists every state
 * before acting, and a child that dies without an answer (the OOM killer, a crash) leaves a
 * deployment that recover() then finishes or rolls back by the resume table, at once, in a new
 * child. One install at a time is still the daemon's job (withInstallLock).
 */
export class Installer {
  constructor(
    /** Read at each request: an agent pack's trial depends on whether the link is up at the time. */
    private readonly engineOptions: () => ChildEngineOptions,
    private readonly lockFile: string,
    private readonly log: Logger,
    private readonly onProgress: (p: InstallProgress) => void,
    /** An agent pack installed, on trial: the agent must restart into it. */
    private readonly onAgentInstalled: (d: Deployment) => void = () => undefined,
  ) {}

  /** Installs the pack at `path`; the outcome of the engine, or of the recovery after a child death. */
  async install(path: string): Promise<InstallOutcome> {
    this.log.info({ pack: path }, 'install started');
    let outcome: InstallOutcome;
    try {
      outcome = await this.installOnce(path);
    } catch (e) {
      this.log.warn({ pack: path, code: (e as { code?: string }).code ?? null, err: (e as Error).message }, 'install failed before it was recorded');
      throw e;
    }
    // What an operator reading the probe's log needs: the outcome and its code, every time.
    const d = outcome.deployment;
    if (awaitsAgentRestart(d)) {
      this.onAgentInstalled(d);
      return outcome;
    }
    if (awaitsReboot(d)) {
      this.log.warn({ pack: path, deploymentId: d.id, version: d.toVersion, slot: d.targetSlot }, 'system image installed; the probe reboots into it on trial');
      return outcome;
    }
    const fields = { pack: path, deploymentId: d.id, outcome: d.outcome, version: d.toVersion, code: d.errorCode, reason: d.errorMessage };
    if (outcome.committed) this.log.info(fields, 'install committed');
    else this.log.warn(fields, `install ${d.outcome ?? 'failed'}`);
    return outcome;
  }

  /** Returns to the previous committed release (the engine's rollback, its refusals included). */
  async rollback(): Promise<InstallOutcome> {
    this.log.info('rollback started');
    const outcome = await this.runOnce({ op: 'rollback', engine: this.engineOptions() });
    const d = outcome.deployment;
    const fields = { deploymentId: d.id, outcome: d.outcome, version: d.toVersion, code: d.errorCode, reason: d.errorMessage };
    if (outcome.committed) this.log.info(fields, 'rollback committed');
    else this.log.warn(fields, `rollback ${d.outcome ?? 'failed'}`);
    return outcome;
  }

  private installOnce(path: string): Promise<InstallOutcome> {
    return this.runOnce({ op: 'install', pack: path, engine: this.engineOptions() });
  }

  private async runOnce(req: Extract<ChildRequest, { op: 'install' | 'rollback' }>): Promise<InstallOutcome> {
    const r = await this.run(req);
    if (r.type === 'outcome') return { deployment: r.deployment, committed: r.committed };
    if (r.type !== 'died') throw new Error(`the installer process answered an ${req.op} with ${r.type}`);
    // The child died mid-install: finish or roll back what it left, now, rather than at the
    // next daemon start.
    const d = await this.recover();
    if (!d) throw new UpdateError('INSTALL_INTERRUPTED', `the installer process ended (${r.why}) before it recorded the install`);
    return { deployment: d, committed: succeeded(d) };
  }

  /**
   * The new agent on trial confirms itself (it reached the server, or passed its self-check): the
   * agent deployment commits. Null when this agent is not on trial.
   */
  async confirmAgent(): Promise<Deployment | null> {
    const r = await this.run({ op: 'confirm-agent', engine: this.engineOptions() });
    if (r.type === 'recovered') return r.deployment;
    if (r.type !== 'died') throw new Error(`the installer process answered a confirmation with ${r.type}`);
    throw new UpdateError('INSTALL_INTERRUPTED', `the installer process ended (${r.why}) while the new agent confirmed itself`);
  }

  /** Finishes or rolls back a deployment a crash left unfinished; null when there was none. */
  async recover(): Promise<Deployment | null> {
    const r = await this.run({ op: 'recover', engine: this.engineOptions() });
    if (r.type === 'recovered') return r.deployment;
    if (r.type !== 'died') throw new Error(`the installer process answered a recovery with ${r.type}`);
    throw new UpdateError('INSTALL_INTERRUPTED', `the installer process ended (${r.why}) while recovering an interrupted install`);
  }

  /**
   * An installer left by a daemon that was killed holds the install lock until it notices its
   * channel is gone; on start the daemon makes sure it has, so that recovery does not meet a
   * lock held by a process about to die.
   */
  async reapStray(): Promise<void> {
    const pid = Number((await readFile(this.lockFile, 'utf8').catch(() => '')).trim());
    if (!Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.split('\0').some((a) => a === CHILD)) return;
    this.log.warn({ pid }, 'stopping the installer process of a previous agent');
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    for (let i = 0; i < 100 && processAlive(pid); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private run(req: ChildRequest): Promise<Exclude<ChildReply, { type: 'progress' | 'error' }> | { type: 'died'; why: string }> {
    return new Promise((resolve, reject) => {
      const child = fork(CHILD, [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: { ...process.env, SONDE_INSTALLER_OF: String(process.pid) },
      });
      let answer: Exclude<ChildReply, { type: 'progress' }> | null = null;
      child.on('message', (m: ChildReply) => {
        if (m.type === 'progress') this.onProgress(m.progress);
        else answer ??= m;
      });
      child.once('error', (e) => {
        if (child.pid === undefined) reject(new UpdateError('INSTALL_INTERRUPTED', `could not start the installer process: ${e.message}`, { cause: e }));
      });
      // 'close', not 'exit': it comes after the channel has delivered every message.
      child.once('close', (code, signal) => {
        if (answer === null) {
          const why = signal ? `killed by ${signal}` : `exit code ${code}`;
          this.log.error({ op: req.op, why }, 'the installer process ended without an answer');
          resolve({ type: 'died', why });
        } else if (answer.type === 'error') {
          if (answer.stack) this.log.error({ err: answer.stack }, 'the installer process failed');
          reject(answer.code === null ? new Error(answer.message) : new RelayedError(answer.code, answer.message));
        } else {
          resolve(answer);
        }
      });
      child.send(req);
    });
  }
}
