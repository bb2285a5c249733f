import { awaitsAgentRestart, awaitsReboot, type InstallOutcome } from '../update/engine.js';
import type { DropInstall } from './drop-types.js';

/**
 * The install function the daemon hands the inbox: the engine's install, reduced to the facts
 * the inbox files in its receipts. Refusals and failures come back as a result; only what the
 * engine throws (INSTALL_LOCKED, an internal error) reaches the inbox as an exception.
 */
export function installWithEngine(engine: { install(path: string): Promise<InstallOutcome> }): DropInstall {
  return async (path) => {
    const { deployment: d, committed } = await engine.install(path);
    return { committed, ...(awaitsAgentRestart(d) ? { onTrial: true } : awaitsReboot(d) ? { onTrial: true, reboots: true } : {}), outcome: d.outcome, errorCode: d.errorCode, errorMessage: d.errorMessage, deploymentId: d.id, version: d.toVersion };
  };
}
