import { statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ProbeState } from '../../../base/src/protocol/messages.js';
import type { Engine } from '../update/engine.js';
import { AGENT_VERSION } from '../update/engine.js';
import { activeRelease, readConfig } from '../update/facts.js';
import { DEFAULT_HEALTH_PATH, httpHealthCheck } from '../update/health.js';
import { readStatus } from '../update/status.js';

/** How long the state report waits for the app's health endpoint. */
const HEALTH_TIMEOUT_MS = 1500;

/**
 * Builds the state message (docs/mqtt.md) from the engine's status and the probe's disk. The app
 * counts as healthy when its health endpoint, on the path its release.json names (as the health
 * gate asks it), answers 200.
 */
export async function buildState(engine: Engine, probeId: string, inbox: { waiting: number; incomplete: number }): Promise<ProbeState> {
  const ctx = engine.context;
  const s = await readStatus(ctx);
  const fs = statfsSync(ctx.layout.root);
  const busy = await readFile(ctx.layout.inhibit).then(() => true, () => false);
  let health: ProbeState['health'] = 'unknown';
  if (s.version !== null) {
    if (!s.app.running) health = 'down';
    else {
      const config = await readConfig(ctx.layout.config).catch(() => null);
      const port = typeof config?.port === 'number' ? config.port : null;
      const path = (await activeRelease(ctx, s.slot))?.health?.path ?? DEFAULT_HEALTH_PATH;
      health = port !== null && (await httpHealthCheck(port, path, HEALTH_TIMEOUT_MS)) === null ? 'ok' : 'degraded';
    }
  }
  const last = s.lastOutcome;
  return {
    v: 1,
    probeId,
    at: new Date().toISOString(),
    agentVersion: AGENT_VERSION,
    product: s.product,
    version: s.version,
    appVersion: s.appVersion,
    slot: s.slot === 'a' || s.slot === 'b' ? s.slot : null,
    dbVersion: s.dbVersion,
    configVersion: s.configVersion,
    health,
    appRunning: s.app.running,
    lastDeployment: last ? { id: last.id, outcome: last.outcome, errorCode: last.errorCode, version: last.version, at: last.endedAt } : null,
    busy,
    disk: { freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize },
    uptimeSeconds: Math.round(process.uptime()),
    inbox,
  };
}
