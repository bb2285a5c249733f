#!/usr/bin/env node
/**
 * bench/fleet (issue 5, Performance): N simulated probes against the fleet server on loopback.
 *
 * Three kinds of process, so that no process comes near the 20,000 open files one may hold
 * (notes/fleet-facts.md): this orchestrator, which measures and prints; the server
 * (fleet-server.ts: startServer in-process, embedded aedes or --mqtt-url to a Mosquitto this
 * bench starts with the files `sonde server mosquitto-config` writes); and one or more simulator
 * processes (fleet-sim.ts: an mqtt.js client per probe).
 *
 * Phases: bulk enrollment through the server's own store (before the server starts), the connect
 * ramp at --rate per second, a steady window of --duration seconds, a fan-out (a rollout of one
 * wave to every probe over the HTTP API, or commands.sendMany), then a reconnect storm (every
 * simulated socket destroyed at once). Figures are printed next to the targets; nothing asserts.
 * Usage: node dist/bench/src/fleet.js [--probes 10000] [--duration 60] [--rate 500] [--mosquitto]
 *        [--fanout rollout|sendmany|both] [--per-sim 5000] [--sim-nice 10] [--state-interval 10] [--keepalive 30]
 *        [--reconnect-min-ms 1000] [--storm-timeout 120] [--mosquitto-option 'LINE']
 *        [--profile-server DIR] [--keep] [--dashboards N] [--fanout none] [--no-storm]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildSamples } from '../../images/src/samples/index.js';
import { SAMPLE_PRODUCT } from '../../images/src/samples/releases.js';
import { hashToken, newTokenId, newTokenSecret } from '../../server/src/auth/tokens.js';
import { createDataDirs, dataPaths } from '../../server/src/data-dir.js';
import { mosquittoPasswordHash } from '../../server/src/mqtt/mosquitto-hash.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { CLOCK_TICKS_PER_SECOND, cpuTicks, loadAverage, schedStat, tcpCounters, tcpDelta, ms, Peer, rssKiB, sec, summarise, wallMs, type Summary } from './fleet-common.js';
import type { FleetServerConfig, FleetServerReady } from './fleet-server.js';
import type { FleetSimConfig, SimStats } from './fleet-sim.js';
import { canConnect } from '../../base/src/net/can-connect.js';
import { openDashboards } from './dashboard-pages.js';
import { benchArgs } from './bench-args.js';

const { arg, flag, num } = benchArgs(
  `Usage: bench/fleet [--probes 10000] [--duration 60] [--rate 500] [--mosquitto]
       [--fanout rollout|sendmany|both|none] [--per-sim 5000] [--sim-nice 10] [--state-interval 10] [--keepalive 30]
       [--reconnect-min-ms 1000] [--storm-timeout 120] [--mosquitto-option 'LINE']
       [--profile-server DIR] [--keep] [--dashboards N] [--dashboard-view '#/probes'] [--no-storm]`,
  {
    values: ['probes', 'duration', 'rate', 'per-sim', 'state-interval', 'keepalive', 'reconnect-min-ms', 'storm-timeout', 'fanout', 'sim-nice', 'mosquitto-option', 'profile-server', 'dashboards', 'dashboard-view'],
    flags: ['mosquitto', 'keep', 'no-storm'],
  },
);

const N = num('probes', 10_000, 1, 100_000);
const durationS = num('duration', 60, 5, 3600);
const rate = num('rate', 500, 1, 10_000);
const perSim = num('per-sim', 5000, 100, 18_000);
const stateIntervalMs = num('state-interval', 10, 1, 600) * 1000;
/** 30 s as the agent had; below the state interval each probe pings between states too (issue 24: the server's last seen). */
const keepaliveSeconds = num('keepalive', 30, 1, 3600);
const reconnectMinMs = num('reconnect-min-ms', 1000, 0, 60_000);
const stormTimeoutMs = num('storm-timeout', 120, 10, 600) * 1000;
const fanoutMode = arg('fanout', 'rollout');
/**
 * The simulators' nice value. The simulators and the server share this machine's two cores; at
 * nice 0 the simulators (about half a core during the ramp) and whatever else runs take CPU the
 * server needs, and the kernel drops SYNs on its full accept queue. At 10 the server, the system
 * under test, gets the CPU first; the simulators' own event-loop delay is printed, since their
 * CONNACK timings include it.
 */
const simNice = num('sim-nice', 10, 0, 19);
const useMosquitto = flag('mosquitto');
/** A line added to the mosquitto.conf that `sonde server mosquitto-config` wrote (to try a setting). */
const mosquittoExtra = arg('mosquitto-option', '');
const keep = flag('keep');
/** Run the server under --cpu-prof, its profile written into this directory at the end. */
const profileDir = arg('profile-server', '');
if (!['rollout', 'sendmany', 'both', 'none'].includes(fanoutMode)) throw new Error('--fanout is rollout, sendmany, both or none');
/** Dashboards (Chromium pages signed in on the probes page) open through the steady window (issue 22: ingest p99 unchanged while 5 are open). */
const dashboards = num('dashboards', 0, 0, 20);
/** The view they show: the probes page re-reads on live changes; the audit log keeps its stream open but re-reads nothing. */
const dashboardView = arg('dashboard-view', '#/probes');
/** Skip the reconnect storm (a shorter run when only the steady window is wanted). */
const noStorm = flag('no-storm');

/** Every connect attempt gives up after this (the agent's own connectTimeout). */
const CONNECT_TIMEOUT_MS = 10_000;
const SONDE = fileURLToPath(new URL('../../cli/src/sonde.js', import.meta.url));
const SERVER_JS = fileURLToPath(new URL('./fleet-server.js', import.meta.url));
const SIM_JS = fileURLToPath(new URL('./fleet-sim.js', import.meta.url));
const MOSQUITTO = '/usr/sbin/mosquitto';
/** The version the simulated probes report, and the pack the fan-out installs. */
const RUNNING = '1.0.0';
const ROLLED_OUT = '1.1.0';

const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));
const mib = (kib: number): string => `${(kib / 1024).toFixed(0)} MiB`;
const line = (label: string, value: string, note = ''): void => console.log(`  ${label.padEnd(46)} ${value}${note ? `   ${note}` : ''}`);
const sumOf = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

const children: ChildProcess[] = [];
let work = '';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

function child(script: string, config: unknown, name: string, execArgv: string[] = []): Peer {
  const c = spawn(process.execPath, [...execArgv, script], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, SONDE_FLEET_CONFIG: JSON.stringify(config) },
  });
  children.push(c);
  return new Peer(name, c);
}

/** Polls `probe` every `everyMs` until it returns true or `timeoutMs` passes; false on timeout. */
async function until(probe: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await probe()) return true;
    await sleep(everyMs);
  }
  return probe();
}

/**
 * CPU share of one core per pid over a window, from /proc/<pid>/stat (all threads); and, as
 * `<name>.wait`, the share of the window the main thread spent runnable but waiting for a CPU.
 */
function cpuWindow(pids: Record<string, number>): () => Record<string, number> {
  const t0 = wallMs();
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, { ticks: cpuTicks(pid), wait: schedStat(pid).waitMs }]));
  return () => {
    const elapsed = wallMs() - t0;
    const out: Record<string, number> = {};
    for (const [k, pid] of Object.entries(pids)) {
      out[k] = (100 * (cpuTicks(pid) - start[k]!.ticks)) / CLOCK_TICKS_PER_SECOND / (elapsed / 1000);
      out[`${k}.wait`] = (100 * (schedStat(pid).waitMs - start[k]!.wait)) / elapsed;
    }
    return out;
  };
}

/** "55 % of one core (waited for a CPU 30 % of the time)", plus Mosquitto's share when it runs. */
function serverCpu(c: Record<string, number>): string {
  const m = c['mosquitto'] !== undefined ? `; mosquitto ${c['mosquitto'].toFixed(0)} % (waited ${c['mosquitto.wait']!.toFixed(0)} %)` : '';
  return `${c['server']!.toFixed(0)} % of one core (main thread waited for a CPU ${c['server.wait']!.toFixed(0)} % of the time)${m}`;
}

function latencyLine(label: string, s: Summary & { dropped?: number }, target: string, expected?: number): void {
  const count = expected !== undefined ? `; ${s.n} of ${expected} expected states committed` : `; ${s.n} states`;
  line(label, `${ms(s.p50)} / ${ms(s.p99)} / max ${ms(s.max)}`, `(${target}${count})`);
}

/** "37 over 1 s, started from +0.4 s to +2.1 s": where in a phase the slow connects were. */
function slowText(slow: readonly number[], from: number): string {
  if (slow.length === 0) return 'none over 1 s';
  const first = slow.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
  const last = slow.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
  return `${slow.length} over 1 s, started from +${((first - from) / 1000).toFixed(1)} s to +${((last - from) / 1000).toFixed(1)} s`;
}

function errorsText(e: Record<string, number>): string {
  const parts = Object.entries(e).map(([k, v]) => `${k} x${v}`);
  return parts.length ? parts.join(', ') : 'none';
}

interface Merged {
  connected: number;
  connack: Summary;
  /** Start times of the attempts whose CONNACK took over 1 s. */
  slow: number[];
  attempts: number;
  timeouts: number;
  errors: Record<string, number>;
  firstAttemptAt: number;
  lastConnackAt: number;
  eldP99: number;
}

async function simStats(sims: Peer[]): Promise<Merged> {
  const all = await Promise.all(sims.map((s) => s.request<SimStats>('stats')));
  const errors: Record<string, number> = {};
  for (const s of all) for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
  return {
    connected: sumOf(all.map((s) => s.connected)),
    connack: summarise(all.flatMap((s) => s.connack)),
    slow: all.flatMap((s) => s.slow),
    attempts: sumOf(all.map((s) => s.attempts)),
    timeouts: sumOf(all.map((s) => s.timeouts)),
    errors,
    firstAttemptAt: Math.min(...all.map((s) => s.firstAttemptAt)),
    lastConnackAt: Math.max(...all.map((s) => s.lastConnackAt)),
    eldP99: Math.max(...all.map((s) => s.eld.p99)),
  };
}

/** The server's collection pauses that started in a window (fleet-server.ts, GcPauses). */
async function gcText(server: Peer, from: number, to: number): Promise<string> {
  const g = await server.request<{ count: number; totalMs: number; maxMs: number; maxKind: string; majorCount: number }>('gc', { from, to });
  return `${g.count} pauses, ${ms(g.totalMs)} in all, ${g.majorCount} full; longest ${ms(g.maxMs)} (${g.maxKind})`;
}

async function connectedCount(sims: Peer[]): Promise<number> {
  return sumOf(await Promise.all(sims.map((s) => s.request<number>('connected'))));
}

async function main(): Promise<void> {
  const sims: Peer[] = [];
  const simCount = Math.ceil(N / perSim);
  work = await mkdtemp(join(tmpdir(), 'sonde-bench-fleet-'));
  console.log(
    `fleet: ${N} probes, ${useMosquitto ? `external Mosquitto (--mqtt-url)${mosquittoExtra ? ` with "${mosquittoExtra}"` : ''}` : 'embedded broker (aedes)'}, ${simCount} simulator process${simCount > 1 ? 'es' : ''}, ` +
      `state every ${stateIntervalMs / 1000} s, keepalive ${keepaliveSeconds} s, simulators at nice ${simNice}, load average ${loadAverage()} on ${cpus().length} cores`,
  );

  // 1. Sample packs (the rollout installs 1.1.0) and the probes, enrolled through the store.
  const samples = await buildSamples(join(work, 'samples'));
  const paths = dataPaths(join(work, 'data'));
  await createDataDirs(paths);
  const t0 = wallMs();
  const store = SqliteStore.open(paths.db);
  const creds: [string, string][] = [];
  try {
    for (let i = 0; i < N; i++) {
      const id = `sim-${String(i).padStart(6, '0')}`;
      const token = newTokenSecret();
      // The simulators never download: the pack URL in their commands is not used.
      await store.probes.enroll(id, {
        httpBase: 'http://127.0.0.1:9',
        mqttPasswordHash: mosquittoPasswordHash(token),
        token: { id: newTokenId(), kind: 'probe', name: id, role: null, probeId: id, hash: hashToken(token) },
      });
      creds.push([id, token]);
    }
  } finally {
    await store.close();
  }
  line('enrollment (store.probes.enroll, one tx each)', sec(wallMs() - t0), `(${N} probes)`);
  const shards: string[] = [];
  for (let s = 0; s < simCount; s++) {
    const file = join(work, `credentials-${s}.json`);
    writeFileSync(file, JSON.stringify(creds.filter((_, i) => i % simCount === s)), { mode: 0o600 });
    shards.push(file);
  }

  // 2. Mosquitto, when asked, with the files `sonde server mosquitto-config` writes.
  let mosquitto: ChildProcess | null = null;
  let mqttUrl: string | undefined;
  if (useMosquitto) {
    const port = await freePort();
    const out = join(work, 'mosquitto');
    // Running as root, Mosquitto would drop to its own user, which cannot read the 0700 temp dir.
    const asRoot = process.getuid?.() === 0 ? ['--user', 'root'] : [];
    await promisify(execFile)(process.execPath, [SONDE, 'server', 'mosquitto-config', '--data', paths.root, '--out', out, '--port', String(port), ...asRoot]);
    if (mosquittoExtra) appendFileSync(join(out, 'mosquitto.conf'), `${mosquittoExtra}\n`);
    const log = createWriteStream(join(work, 'mosquitto.log'));
    mosquitto = spawn(MOSQUITTO, ['-c', join(out, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(mosquitto);
    mosquitto.stdout!.pipe(log);
    mosquitto.stderr!.pipe(log);
    if (!(await until(() => canConnect(port), 10_000, 50))) throw new Error(`mosquitto did not listen on ${port}: ${readFileSync(join(work, 'mosquitto.log'), 'utf8').slice(-2000)}`);
    mqttUrl = `mqtt://127.0.0.1:${port}`;
  }

  // 3. The server, then the pack the fan-out installs.
  const serverConfig: FleetServerConfig = { dataDir: paths.root, keyring: samples.keys.rootCert, logFile: join(work, 'server.log'), ...(mqttUrl ? { mqttUrl } : {}) };
  const server = child(SERVER_JS, serverConfig, 'server', profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []);
  const ready = await server.once<FleetServerReady>('ready', 60_000);
  const auth = { authorization: `Bearer ${ready.adminToken}` };
  const up = await fetch(`${ready.http}/api/v1/packs`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: readFileSync(samples.packs[ROLLED_OUT]) });
  if (up.status !== 201) throw new Error(`pack upload: ${up.status} ${await up.text()}`);
  const packSha256 = ((await up.json()) as { sha256: string }).sha256;

  const pids: Record<string, number> = { server: ready.pid, ...(mosquitto?.pid ? { mosquitto: mosquitto.pid } : {}) };

  // 4. The simulators, and the connect ramp.
  for (let s = 0; s < simCount; s++) {
    const share = JSON.parse(readFileSync(shards[s]!, 'utf8')).length as number;
    const config: FleetSimConfig = {
      index: s,
      url: mqttUrl ?? ready.mqtt,
      credentials: shards[s]!,
      rate: (rate * share) / N,
      stateIntervalMs,
      keepaliveSeconds,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      reconnectMinMs,
      reconnectMaxMs: 60_000,
      product: SAMPLE_PRODUCT,
      version: RUNNING,
    };
    sims.push(child(SIM_JS, config, `sim-${s}`));
  }
  const simPids = await Promise.all(sims.map((s) => s.once<{ pid: number }>('ready', 60_000)));
  simPids.forEach((r, i) => (pids[`sim-${i}`] = r.pid));
  if (simNice > 0) for (const r of simPids) setPriority(r.pid, simNice);

  await server.request('eldReset');
  const rampAt = wallMs() + 500;
  const rampCpu = cpuWindow(pids);
  const rampTcp = tcpCounters();
  await Promise.all(sims.map((s) => s.request('ramp', { at: rampAt })));
  const rampBudget = (N / rate) * 1000 + 60_000;
  await until(async () => (await connectedCount(sims)) >= N, rampBudget, 250);
  const ramp = await simStats(sims);
  const rampLoad = rampCpu();
  const rampEld = await server.request<{ p50: number; p99: number; max: number }>('eld');
  line(`connect ramp at ${rate}/s`, sec(ramp.lastConnackAt - rampAt), `(${ramp.connected} of ${N} connected; ${(N / rate).toFixed(0)} s is the pace itself)`);
  line('CONNACK latency p50 / p99 / max', `${ms(ramp.connack.p50)} / ${ms(ramp.connack.p99)} / ${ms(ramp.connack.max)}`, `(target: none slower than 1 s; ${slowText(ramp.slow, rampAt)}; ${ramp.attempts} attempts, ${ramp.timeouts} timeouts; errors: ${errorsText(ramp.errors)}; timed in the simulators)`);
  line('  during the ramp: server CPU', serverCpu(rampLoad), `(event-loop delay p99 ${ms(rampEld.p99)}, max ${ms(rampEld.max)}; simulators ${simPids.map((_, i) => `${rampLoad[`sim-${i}`]!.toFixed(0)} %`).join(' + ')}, their event-loop delay p99 ${ms(ramp.eldP99)}; ${tcpDelta(rampTcp)})`);

  // Every probe has reported once and its online event is in before the steady window opens.
  await sleep(stateIntervalMs + 2000);

  // 5. The steady window, with the dashboards asked for open on the probes page (their live
  // stream re-reads the page as states arrive, at most once a second each).
  const open = dashboards > 0 ? await openDashboards(ready.http, ready.adminToken, dashboards, dashboardView) : null;
  if (open) {
    await sleep(3000);
    console.log(`  ${dashboards} dashboards open on ${dashboardView} (Chromium, signed in, live stream)`);
  }
  await Promise.all([server.request('eldReset'), ...sims.map((s) => s.request('resetStats'))]);
  const steadyFrom = wallMs();
  const steadyCpu = cpuWindow(pids);
  await sleep(durationS * 1000);
  const steadyTo = wallMs();
  const cpu = steadyCpu();
  const serverRss = rssKiB(ready.pid);
  const mosqRss = mosquitto?.pid ? rssKiB(mosquitto.pid) : null;
  const simRss = simPids.map((r) => rssKiB(r.pid).rss);
  const serverEld = await server.request<{ p50: number; p99: number; max: number }>('eld');
  const steadySims = await simStats(sims);
  // States published up to the window's end are committed a few milliseconds later.
  await sleep(1000);
  const steady = await server.request<Summary>('latency', { from: steadyFrom, to: steadyTo });
  console.log(`  steady window, ${durationS} s:`);
  line('  server CPU, RSS', `${cpu['server']!.toFixed(1)} % of one core, ${mib(serverRss.rss)} (peak ${mib(serverRss.hwm)})`, `(event-loop delay p99 ${ms(serverEld.p99)}, max ${ms(serverEld.max)}; waited for a CPU ${cpu['server.wait']!.toFixed(0)} % of the time)`);
  line('  server GC in the window', await gcText(server, steadyFrom, steadyTo), '');
  if (mosqRss) line('  mosquitto CPU, RSS', `${cpu['mosquitto']!.toFixed(1)} % of one core, ${mib(mosqRss.rss)} (peak ${mib(mosqRss.hwm)})`);
  line(
    '  simulators CPU, RSS',
    simPids.map((r, i) => `${cpu[`sim-${i}`]!.toFixed(0)} %`).join(' + ') + ` of one core, ${simRss.map(mib).join(' + ')}`,
    `(event-loop delay p99 ${ms(steadySims.eldP99)}; ${steadySims.timeouts} timeouts, errors: ${errorsText(steadySims.errors)})`,
  );
  latencyLine('  state ingest, publish -> committed p50/p99', steady, `target p99 <= 50 ms${dashboards ? `; ${dashboards} dashboards open` : ''}`, Math.round((N * durationS * 1000) / stateIntervalMs));
  await open?.close();

  // 6. The fan-out: every probe commanded at once.
  const modes = fanoutMode === 'both' ? ['sendmany', 'rollout'] : fanoutMode === 'none' ? [] : [fanoutMode];
  for (const mode of modes) {
    await Promise.all([server.request('eldReset'), server.request('eventsReset'), ...sims.map((s) => s.request('fanoutReset'))]);
    const fanCpu = cpuWindow(pids);
    let callAt: number;
    let returnedAt: number;
    if (mode === 'rollout') {
      callAt = wallMs();
      const r = await fetch(`${ready.http}/api/v1/rollouts`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bench-fleet', packSha256, target: { channel: 'stable' }, strategy: { waves: [100], advance: { mode: 'approval' } } }),
      });
      returnedAt = wallMs();
      if (r.status !== 201) throw new Error(`rollout: ${r.status} ${await r.text()}`);
    } else {
      const r = await server.request<{ callAt: number; returnedAt: number }>('sendMany', { packSha256 }, 120_000);
      callAt = r.callAt;
      returnedAt = r.returnedAt;
    }
    const countReceived = async (): Promise<number> => sumOf((await Promise.all(sims.map((s) => s.request<{ received: number }>('commands', { times: false })))).map((x) => x.received));
    await until(async () => (await countReceived()) >= N, 60_000, 100);
    const times = (await Promise.all(sims.map((s) => s.request<{ received: number; times: number[] }>('commands', { times: true })))).flatMap((x) => x.times);
    const lastAt = times.length ? times.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY) : Number.NaN;
    const reach = summarise(times.map((t) => t - callAt));
    const fcpu = fanCpu();
    const fanEld = await server.request<{ p50: number; p99: number; max: number }>('eld');
    // A full state period after the call, so the window below holds every probe's report once.
    await sleep(Math.max(0, callAt + stateIntervalMs + 1500 - wallMs()));
    const during = await server.request<Summary>('latency', { from: callAt, to: lastAt });
    const acks = (await server.request<Record<string, number>>('events'))['command-accepted'] ?? 0;
    const period = await server.request<Summary>('latency', { from: callAt, to: callAt + stateIntervalMs });
    const what = mode === 'rollout' ? 'rollout (POST /api/v1/rollouts, one wave)' : 'commands.sendMany (install)';
    console.log(`  fan-out: ${what} to all ${N}:`);
    line('  call -> last probe commanded', sec(lastAt - callAt), `(target <= 2 s; ${times.length} of ${N} reached; call returned after ${sec(returnedAt - callAt)}; reach p50 ${sec(reach.p50)}, p99 ${sec(reach.p99)})`);
    line('  server CPU during it', serverCpu(fcpu), `(event-loop delay p99 ${ms(fanEld.p99)}, max ${ms(fanEld.max)})`);
    line('  server GC from the call to the last command', await gcText(server, callAt, lastAt), '');
    latencyLine('  ingest p50/p99 while it runs', during, 'target p99 <= 250 ms; states published from the call to the last command received');
    latencyLine(`  ingest p50/p99, ${stateIntervalMs / 1000} s from the call`, period, 'for comparison');
    line('  command-accepted events committed', `${acks} of ${N}`, `(within ${sec(wallMs() - callAt)} of the call)`);
    await sleep(3000);
  }

  // 7. The reconnect storm: every socket destroyed at once.
  if (noStorm) {
    await Promise.all(sims.map((s) => s.request('quit').catch(() => undefined)));
    await server.request('stop', null, 30_000).catch(() => undefined);
    return;
  }
  await Promise.all([server.request('eldReset'), server.request('eventsReset'), ...sims.map((s) => s.request('resetStats'))]);
  const stormCpu = cpuWindow(pids);
  const stormTcp = tcpCounters();
  const dropAts = await Promise.all(sims.map((s) => s.request<number>('drop')));
  const dropAt = Math.min(...dropAts);
  let allReportingAt = Number.NaN;
  let allConnectedAt = Number.NaN;
  let reporting = 0;
  /** Connected probes 5, 10, 20, 30, 60 s after the drop. */
  const marks = [5, 10, 20, 30, 60];
  const timeline: string[] = [];
  await until(
    async () => {
      while (marks.length && wallMs() - dropAt >= marks[0]! * 1000) timeline.push(`${await connectedCount(sims)} at +${marks.shift()} s`);
      if (Number.isNaN(allConnectedAt) && (await connectedCount(sims)) >= N) allConnectedAt = (await simStats(sims)).lastConnackAt;
      if (Number.isNaN(allReportingAt)) {
        reporting = await server.request<number>('reporting', { since: dropAt });
        if (reporting >= N) allReportingAt = wallMs();
      }
      return !Number.isNaN(allReportingAt) && !Number.isNaN(allConnectedAt);
    },
    stormTimeoutMs,
    250,
  );
  const storm = await simStats(sims);
  const scpu = stormCpu();
  const stormEld = await server.request<{ p50: number; p99: number; max: number }>('eld');
  console.log(`  reconnect storm: all ${N} sockets destroyed at once, agent backoff (full jitter, first retry within ${reconnectMinMs / 1000} s):`);
  line('  all reconnected after', Number.isFinite(allConnectedAt) ? sec(allConnectedAt - dropAt) : `not within ${sec(stormTimeoutMs)}`, `(${storm.connected} of ${N} connected; ${storm.attempts} attempts; connected: ${timeline.join(', ') || 'all before +5 s'})`);
  line('  all reconnected and reporting after', Number.isFinite(allReportingAt) ? sec(allReportingAt - dropAt) : `not within ${sec(stormTimeoutMs)}`, `(target <= 30 s; ${reporting} of ${N} with a state committed since the drop, polled every 0.25 s)`);
  line('  client timeouts', String(storm.timeouts), `(target 0; errors: ${errorsText(storm.errors)}; ${tcpDelta(stormTcp)})`);
  line('  CONNACK latency p50 / p99 / max', `${ms(storm.connack.p50)} / ${ms(storm.connack.p99)} / ${ms(storm.connack.max)}`, `(from each attempt's connect(), after its backoff; timed in the simulators, whose event-loop delay p99 was ${ms(storm.eldP99)})`);
  line('  server CPU during it', serverCpu(scpu), `(event-loop delay p99 ${ms(stormEld.p99)}, max ${ms(stormEld.max)}; simulators' p99 ${ms(storm.eldP99)})`);
  line('  server GC from the drop to all reporting', await gcText(server, dropAt, Number.isFinite(allReportingAt) ? allReportingAt : wallMs()), '');
  // The wills and online events have had the time the states took, and a little more.
  await sleep(2000);
  const ev = await server.request<Record<string, number>>('events');
  line(
    '  wills (offline) / online events committed',
    `${ev['offline'] ?? 0} / ${ev['online'] ?? 0}`,
    `(${N} of each due, more when attempts were abandoned and retried; within ${sec(wallMs() - dropAt)} of the drop)`,
  );
  const end = rssKiB(ready.pid);
  line('server RSS at the end', `${mib(end.rss)} (peak ${mib(end.hwm)})`, `load average ${loadAverage()}`);

  await Promise.all(sims.map((s) => s.request('quit').catch(() => undefined)));
  await server.request('stop', null, 30_000).catch(() => undefined);
  // A profiled server writes its profile on the way out.
  await until(async () => server.child.exitCode !== null || server.child.signalCode !== null, 30_000, 100);
}

async function cleanup(): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  const deadline = Date.now() + 10_000;
  for (const c of children) {
    while (c.exitCode === null && c.signalCode === null && Date.now() < deadline) await sleep(50);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  if (work && !keep) await rm(work, { recursive: true, force: true });
  else if (work) console.log(`  kept ${work}`);
}

// Bounded in time whatever happens: the ramp, the window, the fan-outs and the storm, with room.
const budgetMs = (N / rate) * 1000 + durationS * 1000 + stormTimeoutMs + 10 * 60_000;
const guard = setTimeout(() => {
  console.error(`fleet: over the time budget of ${sec(budgetMs)}; stopping`);
  void cleanup().finally(() => process.exit(2));
}, budgetMs);
// Output piped into `head` that has gone: stop and clean up rather than die on EPIPE.
process.stdout.on('error', () => {
  void cleanup().finally(() => process.exit(1));
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`fleet: ${(e as Error).stack ?? String(e)}`);
} finally {
  await cleanup();
  clearTimeout(guard);
}
process.exit(failed ? 1 : 0);
