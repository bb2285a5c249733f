import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { processAlive } from '../../base/src/os/process-alive.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { AgentStatus } from '../../agent/src/update/status.js';
import { connectServerClient, SERVER_USER, startAedesBroker, type AedesBroker, type ServerClient } from '../helpers/broker.js';
import { runAgent } from '../helpers/crash-probe.js';
import {
  daemonSamples,
  dedupe,
  history,
  installCommand,
  killDaemon,
  makeProbe,
  outcomeOf,
  rawEvents,
  spawnDaemon,
  waitUntil,
  type DaemonProcess,
  type FleetHttp,
  type PackRef,
  type ProbeFixture,
  startFleetHttp,
} from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';
import { openEngine, stopApp } from '../helpers/probe.js';

/**
 * The daemon runs each install in a short-lived installer process (agent/src/daemon/installer.ts),
 * so that what an install loads and allocates leaves with it. These tests pin what that must not
 * change: the engine's lock and crash semantics. An installer killed on its own (the OOM killer)
 * is recovered by the daemon at once; a daemon killed with SIGKILL takes its installer with it.
 */
const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let broker: AedesBroker;
let http: FleetHttp;
let server: ServerClient;
const tokens = new Map<string, string>();
const roots: string[] = [];
let children: DaemonProcess[] = [];
let packs: Record<'1.0.0' | '1.1.0', PackRef>;

beforeAll(async () => {
  tmp = await scratch('sonde-installer-');
  s = await daemonSamples();
  broker = await startAedesBroker();
  broker.addUser(SERVER_USER, SERVER_PASSWORD);
  http = await startFleetHttp(tokens);
  packs = { '1.0.0': http.addPack('1.0.0', await readFile(s.packs['1.0.0'])), '1.1.0': http.addPack('1.1.0', await readFile(s.packs['1.1.0'])) };
  server = await connectServerClient(broker.url, SERVER_PASSWORD);
}, 180_000);

afterEach(async () => {
  for (const c of children) await killDaemon(c);
  children = [];
});

afterAll(async () => {
  for (const r of roots) await stopApp(r).catch(() => undefined);
  await server?.close();
  await broker?.close();
  await http?.close();
  await tmp?.cleanup();
});

/** A probe on 1.0.0 (installed by the engine directly) with its collector password set. */
async function probeOn100(): Promise<ProbeFixture> {
  const p = await makeProbe(tmp.dir, { samples: s, mqttUrl: broker.url, httpBase: http.base });
  tokens.set(p.id, p.token);
  broker.addUser(p.id, p.token);
  roots.push(p.root);
  const engine = await openEngine(p.root, s);
  try {
    expect((await engine.install(s.packs['1.0.0'])).committed).toBe(true);
  } finally {
    engine.close();
  }
  await setSiteVar(layoutOf(p.root).siteVars, 'CollectorPassword', 'installer-test-secret');
  return p;
}

async function start(p: ProbeFixture): Promise<DaemonProcess> {
  const before = broker.subscribes.get(p.id) ?? 0;
  const d = spawnDaemon(p.configPath);
  children.push(d);
  await waitUntil('the daemon subscribed', () => (broker.subscribes.get(p.id) ?? 0) > before, 20_000, () => (d.child.exitCode !== null ? `it exited: ${d.stderr()}` : null));
  return d;
}

async function status(root: string): Promise<AgentStatus> {
  const r = await runAgent(['agent', 'status', '--root', root, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as AgentStatus;
}

/** The pid holding the engine's install lock when it is an installer process, else null. */
async function installerPid(p: ProbeFixture): Promise<number | null> {
  const pid = Number((await readFile(layoutOf(p.root, p.state).lock, 'utf8').catch(() => '')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) return null;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some((a) => a.endsWith('/daemon/install-child.js')) ? pid : null;
}

describe('sonde agent run: installs in an installer process', () => {
  it('installs in a child that holds the install lock (not the daemon) and is gone once the outcome is reported', async () => {
    const p = await probeOn100();
    const d = await start(p);
    const cmd = installCommand(p.id, packs['1.1.0']);
    await server.command(p.id, cmd);
    const pid = await waitUntil('an installer process holding the lock', () => installerPid(p), 20_000);
    expect(pid).not.toBe(d.child.pid);
    const outcome = await waitUntil('the outcome', () => outcomeOf(broker.received, p.id, cmd.commandId), 30_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.1.0' });
    await waitUntil('the installer process gone', () => !processAlive(pid), 5000);
    expect(d.child.exitCode).toBeNull();
    // Its progress reached the server through the daemon's outbox, in order.
    const states = dedupe(rawEvents(broker.received, p.id)).unique.filter((e) => e.type === 'install-state' && e.deploymentId === outcome.deploymentId).map((e) => e.state);
    expect(states.slice(0, 2)).toEqual(['verified', 'staged']);
    expect(states.at(-1)).toBe('committed');
  });

  it('recovers at once when the installer alone is killed (as by the OOM killer): one outcome, the probe whole, the daemon still running', async () => {
    const p = await probeOn100();
    const d = await start(p);
    const cmd = installCommand(p.id, packs['1.1.0']);
    await server.command(p.id, cmd);
    const pid = await waitUntil('an installer process holding the lock', () => installerPid(p), 20_000);
    await waitUntil('install-state verified', () => rawEvents(broker.received, p.id).some((e) => e.type === 'install-state' && e.state === 'verified'), 20_000);
    process.kill(pid, 'SIGKILL');
    const outcome = await waitUntil('the outcome after the recovery', () => outcomeOf(broker.received, p.id, cmd.commandId), 30_000);
    expect(d.child.exitCode).toBeNull();
    expect(d.logs().some((l) => l.msg === 'the installer process ended without an answer' && l.why === 'killed by SIGKILL')).toBe(true);
    const st = await status(p.root);
    expect(st.unfinished).toBeNull();
    expect(st.app.running).toBe(true);
    // Killed before it could commit: rolled back to 1.0.0, whole. (Killed after the commit was
    // persisted, the recovery finishes it: 1.1.0, whole.)
    if (outcome.outcome === 'committed') expect(st).toMatchObject({ version: '1.1.0', dbVersion: 2, configVersion: 2 });
    else expect({ st, code: outcome.code }).toMatchObject({ st: { version: '1.0.0', dbVersion: 1, configVersion: 1 }, code: 'INSTALL_INTERRUPTED' });
    const outcomes = dedupe(rawEvents(broker.received, p.id)).unique.filter((e) => e.type === 'install-outcome');
    expect(outcomes.map((e) => e.commandId)).toEqual([cmd.commandId]);
    expect((await history(p.root)).filter((h) => h.endedAt === null)).toEqual([]);
  });

  it('takes its installer down with it when the daemon is killed with SIGKILL, and the next start finishes the job', async () => {
    const p = await probeOn100();
    const d = await start(p);
    const cmd = installCommand(p.id, packs['1.1.0']);
    await server.command(p.id, cmd);
    const pid = await waitUntil('an installer process holding the lock', () => installerPid(p), 20_000);
    d.child.kill('SIGKILL');
    await d.exited;
    await waitUntil('the orphaned installer gone', () => !processAlive(pid), 5000);

    const again = await start(p);
    const outcome = await waitUntil('the committed outcome after the restart', () => {
      const o = outcomeOf(broker.received, p.id, cmd.commandId);
      return o?.outcome === 'committed' ? o : null;
    }, 30_000);
    expect(outcome).toMatchObject({ version: '1.1.0' });
    again.child.kill('SIGTERM');
    expect(await again.exited).toEqual({ code: 0, signal: null });
    expect(await status(p.root)).toMatchObject({ version: '1.1.0', unfinished: null });
  });
});
