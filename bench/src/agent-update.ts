#!/usr/bin/env node
/**
 * bench/agent-update (issue 21): an agent updating itself, from the install command to the new
 * agent reporting, and the probe's offline gap while the agent restarts into the new one. A real
 * server (in-process: HTTP, embedded broker, SQLite) and a probe folder whose agent is the
 * sonde-agent package of this build (scripts/build-deb's /usr/lib/sonde) run by the real launcher
 * (packaging/sonde-agent-launch) in its own process group. Each run sends an agent pack one
 * version newer (built before the clock starts) through `POST /api/v1/probes/ID/commands`.
 *
 * - command -> report: until the server's view of the probe shows the new agentVersion.
 * - offline gap, as the server saw it: how long its view said offline (polled every 20 ms).
 * - offline gap, as the agents logged it: the old agent's last log line to the new one's
 *   "mqtt connected".
 * Target: offline gap <= 5 s.
 * Usage: node dist/bench/src/agent-update.js [--runs 5] [--dir .bench/agent-update]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { buildSamples } from '../../images/src/samples/index.js';
import { SAMPLE_MODEL } from '../../images/src/samples/releases.js';
import { ensureAgentTree } from '../../lxc/src/agent-package.js';
import { loadPrivateKey, makePlan, writePack } from '../../pack/src/index.js';
import { startServer } from '../../server/src/server.js';
import { api, freePort } from './local-http.js';
import { median } from './measure.js';
import { benchArgs } from './bench-args.js';

const { arg, num } = benchArgs('Usage: bench/agent-update [--runs 5] [--dir .bench/agent-update]', { values: ['dir', 'runs'] });
const runs = num('runs', 5, 1);
const work = resolve(arg('dir', '.bench/agent-update'));
const REPO = resolve(import.meta.dirname, '../../..');
const LAUNCHER = join(REPO, 'packaging', 'sonde-agent-launch');
const TARGET_GAP_S = 5;


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An agent pack of `version`: the packaged tree, its package.json saying that version. */
async function agentPack(tree: string, keys: { signerKey: string; signerCert: string }, version: string): Promise<Buffer> {
  const src = join(work, `src-${version}`);
  await cp(tree, join(src, 'agent'), { recursive: true, verbatimSymlinks: true });
  const pkgPath = join(src, 'agent', 'package.json');
  await writeFile(pkgPath, JSON.stringify({ ...(JSON.parse(await readFile(pkgPath, 'utf8')) as object), version }, null, 2));
  await writeFile(join(src, 'pack.json'), JSON.stringify({ kind: 'agent', product: 'sonde-agent', version, compatible: [SAMPLE_MODEL], payloads: { agent: 'agent' } }));
  const out = join(work, `agent-${version}.spk`);
  const chainPem = (await readFile(keys.signerCert, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  await writePack(await makePlan(src, { compression: 'gzip' }), { signer: { key: await loadPrivateKey(keys.signerKey), chainPem }, out });
  await rm(src, { recursive: true, force: true });
  const bytes = await readFile(out);
  await rm(out, { force: true });
  return bytes;
}

interface LogLine {
  time: number;
  msg: string;
}

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  console.log('building the sample keys and the agent package of this build (not timed)');
  const samples = await buildSamples(join(work, 'samples'));
  const tree = await ensureAgentTree(REPO, join(work, 'images'), (l) => console.log(`  ${l}`));
  const server = await startServer({ dataDir: join(work, 'server'), port: 0, logLevel: 'warn', keyring: samples.keys.rootCert }, { logger: pino({ level: 'warn' }) });
  const base = server.httpUrls[0]!;
  const admin = server.adminToken!;
  const probeId = 'bench-agent-update';
  const root = join(work, 'probe');
  const state = join(root, 'var', 'sonde');
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: await freePort() }));
  const creds = (await api<Record<string, unknown>>(base, admin, 'POST', `/api/v1/probes/${probeId}/enroll`, {})).body;
  await writeFile(join(work, 'enrollment.json'), JSON.stringify(creds), { mode: 0o600 });
  await writeFile(join(work, 'agent.json'), JSON.stringify({ root, state, credentials: join(work, 'enrollment.json'), keyring: samples.keys.rootCert, log: { level: 'info' } }));

  const lines: LogLine[] = [];
  let launcher: ChildProcess | null = null;
  const start = (): void => {
    launcher = spawn('sh', [LAUNCHER, 'agent', 'run', '--config', join(work, 'agent.json')], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SONDE_AGENT_HOME: join(state, 'agent'), SONDE_AGENT_PACKAGED: tree, SONDE_NODE: process.execPath },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    let rest = '';
    launcher.stdout!.on('data', (c: Buffer) => {
      const parts = (rest + c.toString()).split('\n');
      rest = parts.pop()!;
      for (const l of parts) if (l.startsWith('{')) lines.push(JSON.parse(l) as LogLine);
    });
  };
  const probe = async (): Promise<{ online: boolean; agentVersion: string | null }> => (await api<{ online: boolean; agentVersion: string | null }>(base, admin, 'GET', `/api/v1/probes/${probeId}`)).body;
  try {
    start();
    while (!(await probe()).online) await sleep(50);
    const toReport: number[] = [];
    const gapsServer: number[] = [];
    const gapsLog: number[] = [];
    for (let i = 0; i < runs; i++) {
      const version = `9.9.${i}`;
      const sha = (await api<{ sha256: string }>(base, admin, 'POST', '/api/v1/packs', await agentPack(tree, samples.keys, version))).body.sha256;
      // Settle: the previous run's agent is online and idle.
      await sleep(2000);
      const from = lines.length;
      const t0 = Date.now();
      await api(base, admin, 'POST', `/api/v1/probes/${probeId}/commands`, { type: 'install', packSha256: sha });
      let offlineSince: number | null = null;
      let offline = 0;
      for (;;) {
        const p = await probe();
        const now = Date.now();
        if (!p.online && offlineSince === null) offlineSince = now;
        if (p.online && offlineSince !== null) {
          offline += now - offlineSince;
          offlineSince = null;
        }
        if (p.agentVersion === version && p.online) break;
        if (now - t0 > 300_000) throw new Error(`agent ${version} did not report within 300 s`);
        await sleep(20);
      }
      const reported = Date.now() - t0;
      const mine = lines.slice(from);
      const handover = mine.findIndex((l) => l.msg.startsWith('agent update installed'));
      const stopped = mine.slice(handover).find((l) => l.msg === 'agent stopped');
      const connected = mine.slice(handover).find((l) => l.msg === 'mqtt connected' && stopped !== undefined && l.time >= stopped.time);
      const gapLog = stopped && connected ? connected.time - stopped.time : NaN;
      toReport.push(reported);
      gapsServer.push(offline);
      gapsLog.push(gapLog);
      console.log(`run ${i + 1}: ${version}: command -> report ${(reported / 1000).toFixed(2)} s; offline as the server saw it ${(offline / 1000).toFixed(2)} s; old agent stopped -> new agent connected ${(gapLog / 1000).toFixed(2)} s`);
    }
    console.log('');
    console.log(`command -> new agent reporting: median ${(median(toReport) / 1000).toFixed(2)} s, max ${(Math.max(...toReport) / 1000).toFixed(2)} s (${runs} runs)`);
    console.log(`offline gap (server's view): median ${(median(gapsServer) / 1000).toFixed(2)} s, max ${(Math.max(...gapsServer) / 1000).toFixed(2)} s   target <= ${TARGET_GAP_S} s: ${Math.max(...gapsServer) <= TARGET_GAP_S * 1000 ? 'met' : 'NOT met'}`);
    console.log(`offline gap (agents' logs): median ${(median(gapsLog) / 1000).toFixed(2)} s, max ${(Math.max(...gapsLog) / 1000).toFixed(2)} s`);
  } finally {
    const l = launcher as ChildProcess | null;
    if (l?.pid) {
      try {
        process.kill(-l.pid, 'SIGTERM');
      } catch {
        // gone
      }
      await sleep(1500);
      try {
        process.kill(-l.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await server.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
