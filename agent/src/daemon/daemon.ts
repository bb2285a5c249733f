import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadPrivateKey } from '../../../pack/src/index.js';
import { releaseMemory } from '../../../base/src/os/memory.js';
import type { MqttLink } from '../link/mqtt-link.js';
import { Outbox } from '../link/outbox.js';
import type { Poller } from '../link/poller.js';
import { commandSchema, parseMessage, type Command } from '../../../base/src/protocol/messages.js';
import { awaitsAgentRestart, Engine } from '../update/engine.js';
import type { Deployment } from '../update/journal.js';
import { AgentTrial, agentOutcomeCommand } from './agent-trial.js';
import type { Outcome } from '../update/machine.js';
import { Installer, type InstallProgress } from './installer.js';
import { layoutOf } from '../update/layout.js';
import { CommandStore } from './commands.js';
import type { AgentConfig } from './config.js';
import type { Credentials } from './credentials.js';
import { CommandQueue } from './command-queue.js';
import { runDiagnose } from './diagnose-command.js';
import type { RecentLog } from './recent-log.js';
import { SystemdNotifier } from './notify.js';
import { buildState } from './state-report.js';
import { StateCadence } from './state-cadence.js';
import { assertNever } from '../../../base/src/errors/sonde-error.js';

/**
 * `sonde agent run`: the unattended daemon on every probe (issue 4). It turns server commands
 * (MQTT, or polling when MQTT is down) and FTP drops into installs by the engine, one at a time,
 * and reports state and events through the durable outbox. On start it first lets the engine
 * recover an install a crash interrupted, then resumes accepted commands. The installs themselves
 * run in an installer process (installer.ts): the daemon keeps its links, its outbox and the
 * engine's read side (state reports, starting the app at boot).
 */
export interface DropSource {
  scan(): Promise<void>;
  status(): { waiting: number; incomplete: number };
  start(intervalMs: number): void;
  stop(): Promise<void> | void;
}

export interface DaemonDeps {
  /** The FTP drop; the daemon works without one. It may be loaded on demand (a promise). */
  readonly makeDrop?: (d: AgentDaemon) => DropSource | Promise<DropSource>;
  /** The in-memory copy of the agent's log that diagnostics bundles carry. */
  readonly recentLog?: RecentLog;
}

/** How many attempts of one command a crash may interrupt before that is its outcome. */
const MAX_INTERRUPTED = 3;

export class AgentDaemon {
  readonly engine: Engine;
  readonly installer: Installer;
  readonly outbox: Outbox;
  readonly commands: CommandStore;
  private link: MqttLink | null = null;
  private poller: Poller | null = null;
  private drop: DropSource | null = null;
  private readonly notifier = new SystemdNotifier();
  private readonly cadence: StateCadence;
  private gcTimer: NodeJS.Timeout | null = null;
  private installing: Promise<unknown> = Promise.resolve();
  private busy = false;
  private readonly queue: CommandQueue;
  private stopping = false;
  private recentLog: RecentLog | null = null;
  private trial: AgentTrial | null = null;
  private wantRestart: (() => void) | null = null;
  /** Resolves when an agent pack was installed: the agent must restart (exit RESTART_EXIT_CODE) into the new one. */
  readonly restartRequested: Promise<void> = new Promise((resolve) => (this.wantRestart = resolve));

  private constructor(
    readonly config: AgentConfig,
    readonly creds: Credentials,
    readonly log: Logger,
    engine: Engine,
  ) {
    this.engine = engine;
    const layout = engine.context.layout;
    // One connection to agent.db for the journal, the outbox and the commands (each costs memory).
    const db = engine.context.journal.connection;
    this.outbox = new Outbox(db, creds.probeId, config.outbox.maxMessages);
    this.commands = new CommandStore(db);
    this.installer = new Installer(
      () => ({
        root: config.root,
        state: layout.state,
        ...(config.keyring ? { keyring: config.keyring } : {}),
        ...(config.recipientKey ? { recipientKey: config.recipientKey } : {}),
        ...(config.model ? { model: config.model } : {}),
        health: Object.fromEntries(Object.entries(config.health).filter((e): e is [string, number] => e[1] !== undefined)),
        ...(config.maintenanceWindow ? { maintenanceWindow: config.maintenanceWindow } : {}),
        // The new agent must do at least what this one does: reach the server if this one does.
        selfUpdate: { windowSeconds: config.selfUpdate.windowSeconds, confirm: this.link?.connected ? 'connect' : 'self-check' },
      }),
      layout.lock,
      log,
      (p) => this.onInstallProgress(p),
      (d) => this.onAgentInstalled(d),
    );
    this.cadence = new StateCadence({
      checkMs: config.report.checkIntervalMs,
      fullMs: config.report.stateIntervalMs,
      build: () => this.currentState(),
      publish: async (state) => (await this.link?.publishState(state)) ?? false,
    });
    this.queue = new CommandQueue({
      commands: this.commands,
      installer: this.installer,
      config,
      creds,
      log,
      staging: layout.staging,
      event: (e) => this.event(e),
      reportOutcome: (...a) => this.reportOutcome(...a),
      withInstallLock: (fn) => this.withInstallLock(fn),
      busy: () => this.busy,
    });
  }

  static async start(config: AgentConfig, creds: Credentials, log: Logger, deps: DaemonDeps = {}): Promise<AgentDaemon> {
    // The installer process reads the recipient key itself; reading it here too makes a bad key
    // a start-up error (exit 1 with its code) rather than the first install's.
    if (config.recipientKey) await loadPrivateKey(config.recipientKey);
    // The daemon's own engine only reads (state reports) and starts the app at boot.
    const engine = await Engine.open({ root: config.root, state: config.state, ...(config.keyring ? { keyring: config.keyring } : {}), ...(config.model ? { model: config.model } : {}) });
    const daemon: AgentDaemon = new AgentDaemon(config, creds, log, engine);
    daemon.recentLog = deps.recentLog ?? null;
    await daemon.boot(deps);
    return daemon;
  }

  private onInstallProgress(p: InstallProgress): void {
    // Tie the deployment to its command as soon as it exists, so that an install a crash
    // interrupts is reported against its command after the restart (commandOf).
    const running = this.queue.runningCommand;
    if (running) this.commands.set(running, 'running', p.deploymentId);
    this.log.info({ deploymentId: p.deploymentId, state: p.state }, 'install state');
    this.outbox.add({ type: 'install-state', deploymentId: p.deploymentId, state: p.state, ...(p.detail ? { code: p.detail } : {}) });
    void this.link?.drain();
  }

  private async boot(deps: DaemonDeps): Promise<void> {
    const { config, creds, log } = this;
    // 1. An install a crash interrupted is finished or rolled back before anything else, by an
    // installer process (after the one a killed daemon may have left has gone).
    await this.installer.reapStray();
    const recovered = this.engine.context.journal.unfinished() ? await this.installer.recover() : null;
    if (recovered) {
      log.warn({ deploymentId: recovered.id, state: recovered.state, code: recovered.errorCode }, 'recovered an interrupted install');
      const commandId = this.commandOf(recovered.id);
      // An attempt a crash cut short (INSTALL_INTERRUPTED: rolled back or never switched) is not
      // the command's verdict: the command runs again below, and that run's outcome is the one the
      // server gets for it (a server keeps the first final outcome of a command). The interrupted
      // attempt is still reported, as the deployment it was. Past MAX_INTERRUPTED attempts (a pack
      // that takes the agent down every time), the interruption is the command's outcome.
      // An agent update is judged by its trial, except one cut before its trial file (interrupted).
      if (awaitsAgentRestart(recovered)) this.onAgentInstalled(recovered);
      else if (recovered.kind === 'agent' && recovered.errorCode !== 'INSTALL_INTERRUPTED') this.reportAgentOutcome(recovered);
      else {
        const retry = commandId !== undefined && recovered.errorCode === 'INSTALL_INTERRUPTED' && this.commands.interrupted(commandId) < MAX_INTERRUPTED;
        if (commandId !== undefined && !retry) this.commands.set(commandId, 'done', recovered.id);
        this.reportOutcome(recovered.id, recovered.outcome, recovered.errorCode, recovered.errorMessage, recovered.toVersion, retry ? undefined : commandId);
      }
    }
    // A new agent on trial (the launcher runs it): it installs nothing until it has confirmed itself.
    this.trial = await AgentTrial.detect(this.installer, this.engine, log, config.selfUpdate.settleMs);
    this.trial?.start((fn) => this.withInstallLock(fn), (d) => this.reportAgentOutcome(d));
    // The app does not outlive a reboot (or a container stop): start it, then report its state as
    // soon as it is healthy instead of at the next periodic report.
    const appStarted = await this.engine.ensureAppRunning().catch((e: Error) => {
      log.error({ code: (e as { code?: string }).code, err: e.message }, 'could not start the app');
      return false;
    });
    if (appStarted) log.info('started the app of the active release');
    // 2. The links, loaded only now: the app starts first and boots beside them.
    const [{ MqttLink }, { Poller }] = await Promise.all([import('../link/mqtt-link.js'), import('../link/poller.js')]);
    this.link = new MqttLink({
      url: creds.server.mqtt,
      probeId: creds.probeId,
      token: creds.token,
      ...(creds.ca ? { ca: creds.ca } : {}),
      reconnect: config.reconnect,
      keepaliveSeconds: config.mqtt.keepaliveSeconds,
      outbox: this.outbox,
      log,
      onCommand: (payload) => this.onCommand(payload, 'mqtt'),
      onConnect: () => {
        void this.reportState();
        this.trial?.onConnected();
      },
    });
    this.link.start();
    this.poller = new Poller({
      baseUrl: creds.server.http,
      probeId: creds.probeId,
      token: creds.token,
      ...(creds.ca ? { ca: creds.ca } : {}),
      intervalMs: config.poll.intervalMs,
      maxIntervalMs: config.poll.maxIntervalMs,
      shouldPoll: () => (this.link?.offlineForMs() ?? Infinity) >= config.poll.afterOfflineMs,
      onCommand: (payload) => this.onCommand(payload, 'poll'),
      log,
    });
    this.poller.start();
    // 3. Commands accepted before a restart (with the deployment each last ran, if any).
    for (const c of this.commands.pending()) {
      if (c.command.type === 'install' || c.command.type === 'rollback') this.queue.resume(c.command, c.deploymentId === null ? null : this.engine.context.journal.get(c.deploymentId));
      else if (c.command.type === 'diagnose') void this.diagnose(c.command);
    }
    // 4. The FTP drop.
    if (deps.makeDrop) {
      this.drop = await deps.makeDrop(this);
      this.drop.start(config.drop.scanIntervalMs);
    }
    // The state goes out when it changes, and in full every stateIntervalMs (docs/traffic.md).
    this.cadence.start();
    // The agent idles most of its life: give back what a burst of work grew, now and then.
    this.gcTimer = setInterval(() => {
      if (!this.busy) releaseMemory();
    }, 30_000);
    this.gcTimer.unref();
    if (appStarted) void this.reportWhenHealthy(config.health.windowMs ?? 60_000);
    // The download code loads a few seconds after boot rather than at the first command, so the
    // boot stays fast. (The install code never loads here: installs run in installer processes.)
    setTimeout(() => void import('../link/download.js').catch(() => undefined), 3000).unref();
    await this.notifier.ready(`probe ${creds.probeId} ready`);
    this.notifier.startWatchdog();
    log.info({ probeId: creds.probeId, root: config.root }, 'agent started');
  }

  /**
   * An agent pack was installed and its trial written: the agent restarts into the launcher, which
   * runs the new agent. The command (if any) stays running: the new agent reports its outcome.
   */
  private onAgentInstalled(d: Deployment): void {
    this.log.warn({ deploymentId: d.id, version: d.toVersion }, 'agent update installed; restarting into the new agent on trial');
    this.wantRestart?.();
  }

  /** An agent deployment's outcome, against its command unless it was that command's committed `agentFirst` (agent-trial.ts). */
  private reportAgentOutcome(d: Deployment): void {
    const commandId = agentOutcomeCommand(d, this.commands, this.layout.staging);
    if (commandId !== undefined) this.commands.set(commandId, 'done', d.id);
    this.reportOutcome(d.id, d.outcome, d.errorCode, d.errorMessage, d.toVersion, commandId);
  }

  /** Installs run one at a time, whoever asks (a command, the FTP drop). */
  withInstallLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.installing.then(async () => {
      this.busy = true;
      try {
        return await fn();
      } finally {
        this.busy = false;
      }
    });
    this.installing = run.catch(() => undefined);
    return run;
  }

  event(e: Parameters<Outbox['add']>[0]): void {
    this.outbox.add(e);
    void this.link?.drain();
  }

  private commandOf(deploymentId: string): string | undefined {
    return this.commands.pending().find((c) => c.deploymentId === deploymentId)?.command.commandId;
  }

  /** Reports a deployment's recorded outcome (null, for one that did not end, is reported failed). */
  reportOutcome(deploymentId: string, recorded: Outcome | null, code: string | null, message: string | null, version: string | null, commandId?: string): void {
    const outcome = recorded ?? 'failed';
    this.event({
      type: 'install-outcome',
      id: `outcome-${deploymentId}`,
      deploymentId,
      outcome,
      ...(code ? { code } : {}),
      ...(message ? { message: message.slice(0, 1000) } : {}),
      ...(version ? { version } : {}),
      ...(commandId ? { commandId } : {}),
    });
    void this.reportState().then(() => setImmediate(releaseMemory));
  }

  /** Polls the app's health for up to `windowMs`, then publishes the state once. */
  private async reportWhenHealthy(windowMs: number): Promise<void> {
    const deadline = Date.now() + windowMs;
    while (!this.stopping && Date.now() < deadline) {
      const state = await this.currentState().catch(() => null);
      if (state?.health === 'ok') break;
      await new Promise((r) => setTimeout(r, 100).unref());
    }
    if (!this.stopping) await this.reportState();
  }

  private currentState(): ReturnType<typeof buildState> {
    return buildState(this.engine, this.creds.probeId, this.drop?.status() ?? { waiting: 0, incomplete: 0 });
  }

  /** Publishes the state now, changed or not (connect, report-now, an outcome, the app healthy at boot). */
  async reportState(): Promise<void> {
    try {
      await this.cadence.publishNow();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'state report failed');
    }
  }

  /** Every command passes here, parsed strictly; a bad one is logged with its code and dropped. */
  onCommand(payload: Buffer, via: 'mqtt' | 'poll'): void {
    const r = parseMessage(commandSchema, payload);
    if (!r.ok) {
      // The payload may hold anything: log its code and size, never its content.
      this.log.warn({ code: r.code, via, bytes: payload.length, detail: r.message }, 'command refused');
      return;
    }
    const c = r.value;
    if (c.probeId !== this.creds.probeId) {
      this.log.warn({ code: 'COMMAND_WRONG_PROBE', via, commandId: c.commandId }, 'command for another probe refused');
      return;
    }
    switch (c.type) {
      case 'report-now':
        void this.reportState();
        return;
      case 'cancel':
        this.queue.cancel(c.target);
        return;
      case 'diagnose':
        if (this.stopping || !this.commands.accept(c, 'queued')) return;
        this.event({ type: 'command-accepted', commandId: c.commandId });
        void this.diagnose(c);
        return;
      case 'install':
      case 'rollback':
        if (this.commands.get(c.commandId)) {
          this.log.info({ commandId: c.commandId, via }, 'command seen before; ignored');
          return;
        }
        if (this.stopping) return;
        this.queue.take(c);
        return;
      default:
        return assertNever(c, 'command');
    }
  }

  /** A signed diagnostics request from the FTP drop: the bundle, sealed, into the drop's outbox. */
  async answerDropRequest(path: string): Promise<{ ok: true; file: string } | { ok: false; code: string; message: string }> {
    const { answerDropRequest } = await import('../diagnostics/drop-request.js');
    return answerDropRequest(path, {
      engine: this.engine,
      probeId: this.creds.probeId,
      state: () => this.currentState(),
      recentLog: this.recentLog ? (n) => this.recentLog!.text(n) : null,
      agentConfig: this.config,
      seedKeyring: this.config.keyring,
      outbox: this.config.drop.outbox ?? join(this.layout.state, 'drop-outbox'),
      log: this.log,
    });
  }

  private diagnose(c: Extract<Command, { type: 'diagnose' }>): Promise<void> {
    const { engine, config, creds, log, commands } = this;
    return runDiagnose(c, { engine, config, creds, log, commands, recentLog: this.recentLog, state: () => this.currentState(), event: (e) => this.event(e) });
  }

  /** SIGTERM: stop taking work, park a download, let a running install finish, say goodbye. */
  /** `restart`: the drain before the launcher runs a new agent; systemd is not told STOPPING=1 (docs/packaging.md). */
  stop(o: { restart?: boolean } = {}): Promise<void> {
    this.stopped ??= this.drain(o.restart === true);
    return this.stopped;
  }

  private stopped: Promise<void> | null = null;

  private async drain(restart: boolean): Promise<void> {
    this.stopping = true;
    if (!restart) await this.notifier.stopping();
    this.notifier.stopWatchdog();
    this.cadence.stop();
    this.trial?.stop();
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.poller?.stop();
    await this.drop?.stop();
    this.queue.stop();
    await this.installing;
    await this.link?.stop();
    this.engine.close(); // agent.db's connection, which the outbox and the command store share
    this.log.info('agent stopped');
  }

  get layout(): ReturnType<typeof layoutOf> {
    return this.engine.context.layout;
  }
}
