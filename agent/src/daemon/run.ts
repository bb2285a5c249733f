import { loadAgentConfig } from './config.js';
import { loadCredentials } from './credentials.js';
import { AgentDaemon, type DaemonDeps } from './daemon.js';
import { createLogger } from './log.js';
import { RecentLog } from './recent-log.js';

/**
 * `sonde agent run --config FILE`: load and check the config and credentials (a bad one exits 1
 * with its code before anything starts), start the daemon, and drain on SIGTERM/SIGINT: stop
 * taking work, park a download, let a running install reach its outcome, then exit 0.
 */
export async function runDaemon(configPath: string, deps: DaemonDeps = {}): Promise<void> {
  const config = await loadAgentConfig(configPath);
  const creds = await loadCredentials(config.credentials);
  const recentLog = new RecentLog();
  const log = createLogger(config.log.level, process.stdout, recentLog);
  // The drop's modules load once the app runs and the links are up (the daemon's boot order).
  const makeDrop = deps.makeDrop ?? (async (d: AgentDaemon) => (await import('./drop-source.js')).dropSourceFor(d));
  const daemon = await AgentDaemon.start(config, creds, log, { makeDrop, recentLog });
  let restart = false;
  await new Promise<void>((resolve) => {
    // An agent update installed: drain as for a stop, then exit RESTART_EXIT_CODE; the launcher
    // (packaging/sonde-agent-launch) starts again at once and runs the new agent on trial.
    void daemon.restartRequested.then(() => {
      restart = true;
      daemon.stop({ restart: true }).then(resolve, (e: unknown) => {
        log.error({ err: (e as Error).message }, 'drain failed');
        resolve();
      });
    });
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (signalled) return;
      signalled = true;
      log.info({ signal: sig }, 'draining');
      daemon.stop().then(resolve, (e: unknown) => {
        log.error({ err: (e as Error).message }, 'drain failed');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  log.flush?.();
  if (restart) process.exitCode = RESTART_EXIT_CODE;
}

/** The exit code that asks the launcher to start again at once (EX_TEMPFAIL). */
export const RESTART_EXIT_CODE = 75;
