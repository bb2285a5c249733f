import { statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import type { ProbeState } from '../../../base/src/protocol/messages.js';
import type { Engine } from '../update/engine.js';
import { AGENT_VERSION } from '../update/engine.js';
import { readConfig } from '../update/facts.js';
import { readStatus } from '../update/status.js';

/** Builds the state message (docs/mqtt.md) from the engine's status and the probe's disk. */
function appHealthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/health', timeout: 1500 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

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
      health = port !== null && (await appHealthy(port)) ? 'ok' : 'degraded';
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
