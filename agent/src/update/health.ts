import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { crashPoint } from './crash.js';

/**
 * The health gate (DESIGN.md, "Health"): after the switch the new app must pass `required`
 * consecutive checks within `windowMs`. A check passes when the process is alive, the runner's own
 * check passes (systemd: every unit active and none restarted since the start), its HTTP health
 * endpoint answers 200 on the configured port, and the release's optional `hooks/health` script
 * exits 0. Any failure resets the run; the window running out is the verdict.
 */
export interface HealthPolicy {
  readonly required: number;
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly requestTimeoutMs: number;
}

export const DEFAULT_HEALTH: HealthPolicy = Object.freeze({ required: 3, intervalMs: 1000, windowMs: 60_000, requestTimeoutMs: 2000 });

export interface HealthTarget {
  readonly port: number;
  readonly path: string;
  readonly slotDir: string;
  readonly alive: () => Promise<boolean>;
  /** The runner's own check (systemd: every unit active, none restarting); null when it passes. */
  readonly runnerCheck?: () => Promise<string | null>;
}

export interface HealthVerdict {
  readonly healthy: boolean;
  readonly checks: number;
  readonly reason: string;
  readonly ms: number;
  /** The app process was gone (rather than running and failing its checks). */
  readonly exited?: boolean;
}

/** Where the health endpoint answers when the release's release.json names no `health.path`. */
export const DEFAULT_HEALTH_PATH = '/health';

/**
 * One HTTP health check of the app on loopback: null when it answered 200, else why not. The
 * health gate and the daemon's state report both ask this way, on the release's own path.
 */
export function httpHealthCheck(port: number, path: string, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? null : `health endpoint answered ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`health endpoint unreachable (${(e as NodeJS.ErrnoException).code ?? e.message})`));
    req.end();
  });
}

async function hookOk(slotDir: string, timeoutMs: number): Promise<string | null> {
  const hook = join(slotDir, 'hooks', 'health');
  try {
    await access(hook, constants.X_OK);
  } catch {
    return null; // no hook: nothing to run
  }
  return new Promise((resolve) => {
    execFile(hook, [], { timeout: timeoutMs, cwd: slotDir }, (e) => resolve(e ? `health hook failed (${e.code ?? e.signal ?? 'error'})` : null));
  });
}

export async function checkHealth(target: HealthTarget, policy: HealthPolicy): Promise<HealthVerdict> {
  const started = Date.now();
  let good = 0;
  let checks = 0;
  let reason = 'no check ran';
  while (Date.now() - started < policy.windowMs) {
    checks++;
    let failure: string | null = null;
    if (!(await target.alive())) {
      // A dead app cannot recover inside the window: say so at once.
      return { healthy: false, checks, reason: 'the app process exited', ms: Date.now() - started, exited: true };
    }
    failure =
      (await target.runnerCheck?.()) ??
      (await httpHealthCheck(target.port, target.path, policy.requestTimeoutMs)) ??
      (await hookOk(target.slotDir, policy.requestTimeoutMs));
    if (checks === 1) crashPoint('trial:health-checked-once');
    if (failure === null) {
      good++;
      if (good >= policy.required) return { healthy: true, checks, reason: `${good} consecutive good checks`, ms: Date.now() - started };
    } else {
      good = 0;
      reason = failure;
    }
    await new Promise((r) => setTimeout(r, policy.intervalMs));
  }
  return { healthy: false, checks, reason: `not healthy within ${policy.windowMs} ms: ${reason}`, ms: Date.now() - started };
}
