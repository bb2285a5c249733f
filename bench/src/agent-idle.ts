#!/usr/bin/env node
/**
 * bench/agent-idle (issue 4): the daemon's memory. It starts an in-process aedes broker and a pack
 * server on loopback, runs `sonde agent run` as a child process, installs the sample 1.0.0 and
 * 1.1.0 by MQTT command, then reports the agent's RSS after 60 s idle (connected), and again after
 * 500 back-to-back install/rollback cycles of a small pack (the sample 1.2.0-crash, which rolls
 * back at once) and the same idle period (and 5 s after the last cycle, for the record). RSS is read from /proc/<pid>/status (VmRSS, and VmHWM for the peak).
 * Usage: node dist/bench/src/agent-idle.js [--idle-seconds 60] [--cycles 500] [--dir .bench/agent-idle]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { buildSamples, type SamplePackId } from '../../images/src/samples/index.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { Engine } from '../../agent/src/update/engine.js';
import { benchArgs } from './bench-args.js';

const { arg, num } = benchArgs('Usage: bench/agent-idle [--idle-seconds 60] [--cycles 500] [--dir .bench/agent-idle]', { values: ['cycles', 'dir', 'idle-seconds'] });
const idleSeconds = num('idle-seconds', 60, 1);
const cycles = num('cycles', 500, 1);
const work = resolve(arg('dir', '.bench/agent-idle'));
const sonde = fileURLToPath(new URL('../../cli/src/sonde.js', import.meta.url));

function rssKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

async function main(): Promise<void> {
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const samples = await buildSamples(join(work, 'samples'));
  const root = join(work, 'probe');
  await mkdir(join(root, 'etc'), { recursive: true });
  const port = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => r(typeof a === 'object' && a ? a.port : 0));
    });
  });
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port, measurements: { paused: true } }));
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'bench-secret');

  const aedes = await Aedes.createBroker();
  const broker = net.createServer(aedes.handle);
  await new Promise<void>((r) => broker.listen(0, '127.0.0.1', () => r()));
  const mqttPort = (broker.address() as net.AddressInfo).port;
  const web = http.createServer((req, res) => {
    const id = decodeURIComponent((req.url ?? '/').slice(1)) as SamplePackId;
    const path = samples.packs[id];
    if (!path) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
  const httpPort = (web.address() as net.AddressInfo).port;

  const creds = join(work, 'credentials.json');
  await writeFile(creds, JSON.stringify({ format: 'sonde-enrollment-1', probeId: 'bench-probe', token: 'b'.repeat(43), server: { http: `http://127.0.0.1:${httpPort}`, mqtt: `mqtt://127.0.0.1:${mqttPort}` } }), { mode: 0o600 });
  const config = join(work, 'agent.json');
  await writeFile(
    config,
    JSON.stringify({
      root,
      state: join(root, 'var', 'sonde'),
      credentials: creds,
      keyring: join(samples.out, 'keys', 'root.crt'),
      recipientKey: join(samples.out, 'keys', 'fleet.key'),
      health: { required: 1, intervalMs: 50, windowMs: 3000 },
      report: { stateIntervalMs: 10_000 },
      log: { level: 'warn' },
    }),
  );
  const agent: ChildProcess = spawn(process.execPath, [sonde, 'agent', 'run', '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const server = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'bench-server' });
  const outcomes = new Map<string, string>();
  let waiting: { id: string; resolve: (o: string) => void } | null = null;
  server.on('message', (_t, p) => {
    const e = JSON.parse(p.toString()) as { type: string; commandId?: string; outcome?: string; code?: string };
    if ((e.type === 'install-outcome' || e.type === 'download-failed') && e.commandId) {
      const o = e.outcome ?? e.code ?? 'failed';
      outcomes.set(e.commandId, o);
      if (waiting?.id === e.commandId) waiting.resolve(o);
    }
  });
  await new Promise<void>((r) => server.on('connect', () => server.subscribe('sonde/v1/probes/bench-probe/events', { qos: 1 }, () => r())));
  let n = 0;
  const install = (id: SamplePackId): Promise<string> => {
    const commandId = `bench-${n++}`;
    const path = samples.packs[id];
    const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
    const p = new Promise<string>((r) => (waiting = { id: commandId, resolve: r }));
    server.publish(
      'sonde/v1/probes/bench-probe/commands',
      JSON.stringify({ v: 1, type: 'install', commandId, probeId: 'bench-probe', issuedAt: new Date().toISOString(), pack: { url: `http://127.0.0.1:${httpPort}/${encodeURIComponent(id)}`, sha256, size: statSync(path).size } }),
      { qos: 1 },
    );
    return p;
  };
  try {
    await new Promise((r) => setTimeout(r, 1500));
    for (const id of ['1.0.0', '1.1.0'] as const) {
      const o = await install(id);
      if (o !== 'committed') throw new Error(`${id}: ${o}`);
    }
    const pid = agent.pid!;
    console.log(`agent-idle: sample app on a probe root, agent pid ${pid}, broker aedes on 127.0.0.1:${mqttPort}`);
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    const idle = rssKiB(pid);
    console.log(`  RSS after ${idleSeconds} s idle, connected      ${mib(idle.rss)}   (target <= 60 MiB; peak so far ${mib(idle.hwm)})`);
    const t0 = Date.now();
    let rolledBack = 0;
    for (let i = 0; i < cycles; i++) {
      const o = await install('1.2.0-crash');
      if (o === 'rolled-back') rolledBack++;
      else throw new Error(`cycle ${i}: ${o}`);
      if ((i + 1) % 100 === 0) console.log(`    ${i + 1} cycles, RSS ${mib(rssKiB(pid).rss)}`);
    }
    const busyFor = (Date.now() - t0) / 1000;
    // Both figures are taken after the same idle period, so that the growth compares like with
    // like: what V8 and malloc hand back once the agent is idle again is not growth. The figure
    // 5 s after the last cycle is printed too.
    await new Promise((r) => setTimeout(r, 5000));
    const soon = rssKiB(pid);
    console.log(`  RSS 5 s after the last cycle              ${mib(soon.rss)}   (${((soon.rss - idle.rss) / 1024).toFixed(1)} MiB over the idle figure)`);
    await new Promise((r) => setTimeout(r, Math.max(0, idleSeconds * 1000 - 5000)));
    const after = rssKiB(pid);
    console.log(`  RSS after ${cycles} install/rollback cycles and ${idleSeconds} s idle   ${mib(after.rss)}   growth ${((after.rss - idle.rss) / 1024).toFixed(1)} MiB (target <= 5 MiB); ${rolledBack} rolled back in ${busyFor.toFixed(0)} s; peak ${mib(after.hwm)}`);
  } finally {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    const e = await Engine.open({ root });
    await e.context.runner.stop();
    e.close();
    server.end(true);
    broker.close();
    web.close();
    aedes.close();
  }
}

await main();
process.exit(0);
