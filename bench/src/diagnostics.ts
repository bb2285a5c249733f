#!/usr/bin/env node
/**
 * bench/diagnostics (issue 23): how long a diagnostics bundle of about 1 MiB compressed takes from
 * the request (POST /api/v1/probes/ID/diagnose) to the server holding it (the command succeeded),
 * on loopback. A real server (in-process: HTTP, embedded broker, SQLite) and a real agent daemon
 * (in-process, its installer processes forked), the sample 1.0.0 installed; the agent's in-memory
 * log is filled with hard-to-compress lines so that the bundle is near the size the target names.
 * Target: <= 10 s for a bundle of <= 1 MiB.
 * Usage: node dist/bench/src/diagnostics.js [--runs 5] [--log-kib 1850] [--dir .bench/diagnostics]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { AgentDaemon } from '../../agent/src/daemon/daemon.js';
import { loadAgentConfig } from '../../agent/src/daemon/config.js';
import { loadCredentials } from '../../agent/src/daemon/credentials.js';
import { RecentLog } from '../../agent/src/daemon/recent-log.js';
import { Engine } from '../../agent/src/update/engine.js';
import { buildSamples } from '../../images/src/samples/index.js';
import { startServer } from '../../server/src/server.js';
import { api, freePort } from './local-http.js';
import { benchArgs } from './bench-args.js';

const { arg, num } = benchArgs('Usage: bench/diagnostics [--runs 5] [--log-kib 1850] [--dir .bench/diagnostics]', { values: ['dir', 'log-kib', 'runs'] });
const runs = num('runs', 5, 1);
const logKiB = num('log-kib', 1850, 1);
const work = resolve(arg('dir', '.bench/diagnostics'));


const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const samples = await buildSamples(join(work, 'samples'));
  const server = await startServer({ dataDir: join(work, 'server'), port: 0, logLevel: 'warn', keyring: samples.keys.rootCert }, { logger: pino({ level: 'warn' }) });
  const base = server.httpUrls[0]!;
  const admin = server.adminToken!;
  const probeId = 'bench-diag';
  const root = join(work, 'probe');
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: await freePort(), measurements: { paused: true } }));
  const creds = (await api<Record<string, unknown>>(base, admin, 'POST', `/api/v1/probes/${probeId}/enroll`, {})).body;
  await writeFile(join(work, 'enrollment.json'), JSON.stringify(creds), { mode: 0o600 });
  await writeFile(
    join(work, 'agent.json'),
    JSON.stringify({
      root,
      state: join(root, 'var', 'sonde'),
      credentials: join(work, 'enrollment.json'),
      keyring: samples.keys.rootCert,
      recipientKey: join(samples.out, 'keys', 'fleet.key'),
      health: { required: 1, intervalMs: 50, windowMs: 3000 },
      log: { level: 'info' },
    }),
  );
  const config = await loadAgentConfig(join(work, 'agent.json'));
  const recentLog = new RecentLog(Math.max(logKiB, 64) * 1024);
  const log = pino({ level: 'info', base: { app: 'sonde-agent' } }, pino.multistream([{ level: 'info', stream: pino.destination('/dev/null') }, { level: 'info', stream: recentLog }]));
  const daemon = await AgentDaemon.start(config, await loadCredentials(config.credentials), log, { recentLog });
  try {
    const pack = await readFile(samples.packs['1.0.0']);
    await api(base, admin, 'POST', '/api/v1/packs', pack);
    const until = Date.now() + 30_000;
    while (!(await api<{ online: boolean }>(base, admin, 'GET', `/api/v1/probes/${probeId}`)).body.online) {
      if (Date.now() > until) throw new Error('the agent did not come online');
      await new Promise((r) => setTimeout(r, 100));
    }
    const waitFor = async (commandId: string): Promise<string> => {
      for (;;) {
        const c = (await api<{ status: string; errorCode: string | null }>(base, admin, 'GET', `/api/v1/commands/${commandId}`)).body;
        if (['succeeded', 'failed', 'refused', 'cancelled'].includes(c.status)) return c.errorCode ? `${c.status} ${c.errorCode}` : c.status;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const install = (await api<{ commandId: string }>(base, admin, 'POST', `/api/v1/probes/${probeId}/commands`, { type: 'install', packSha256: createHash('sha256').update(pack).digest('hex') })).body;
    const installed = await waitFor(install.commandId);
    if (installed !== 'succeeded') throw new Error(`install: ${installed}`);
    // Log lines as the agent writes them, whose messages do not compress (random base64).
    let filled = 0;
    while (filled < logKiB * 1024) {
      const line = randomBytes(150).toString('base64');
      log.info({ filler: line }, 'bench filler');
      filled += line.length + 80;
    }
    await new Promise((r) => setTimeout(r, 200));
    console.log(`diagnostics: server and agent in-process on loopback, sample 1.0.0 installed, ${Math.round(recentLog.text().length / 1024)} KiB of agent log kept`);
    const times: number[] = [];
    let size = 0;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const c = (await api<{ commandId: string }>(base, admin, 'POST', `/api/v1/probes/${probeId}/diagnose`, {})).body;
      const outcome = await waitFor(c.commandId);
      const ms = performance.now() - t0;
      if (outcome !== 'succeeded') throw new Error(`diagnose: ${outcome}`);
      const list = (await api<{ commandId: string; size: number }[]>(base, admin, 'GET', `/api/v1/probes/${probeId}/diagnostics`)).body;
      size = list.find((b) => b.commandId === c.commandId)?.size ?? 0;
      times.push(ms);
      console.log(`  run ${i + 1}: ${(size / 1024 / 1024).toFixed(2)} MiB bundle held by the server ${(ms / 1000).toFixed(2)} s after the request`);
    }
    console.log(`diagnostics: median ${(median(times) / 1000).toFixed(2)} s (min ${(Math.min(...times) / 1000).toFixed(2)}, max ${(Math.max(...times) / 1000).toFixed(2)}) for a ${(size / 1024 / 1024).toFixed(2)} MiB bundle (target <= 10 s for <= 1 MiB)`);
  } finally {
    await daemon.stop();
    await server.close();
    // The app the install started outlives the daemon (as on a probe): stop it.
    const engine = await Engine.open({ root, state: join(root, 'var', 'sonde') });
    await engine.context.runner.stop();
    engine.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
