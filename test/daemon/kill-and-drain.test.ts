import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
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
  trace,
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
 * `sonde agent run` as a real child process (dist/, so `npm run build` first): killed with
 * SIGKILL mid-download and mid-install, then started again; and stopped with SIGTERM, which
 * drains: an install runs to its outcome, a download is parked for the next start (issue 4).
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
  tmp = await scratch('sonde-daemon-kill-');
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
  http.setPackBehaviour({});
});

afterAll(async () => {
  for (const r of roots) await stopApp(r).catch(() => undefined);
  await server?.close();
  await broker?.close();
  await http?.close();
  await tmp?.cleanup();
});

async function probe(): Promise<ProbeFixture> {
  const p = await makeProbe(tmp.dir, { samples: s, mqttUrl: broker.url, httpBase: http.base });
  tokens.set(p.id, p.token);
  broker.addUser(p.id, p.token);
  roots.push(p.root);
  return p;
}

/** Starts `sonde agent run` and waits until it has subscribed to its commands on a new connection. */
async function start(p: ProbeFixture, env: Record<string, string> = {}): Promise<DaemonProcess> {
  const before = broker.subscribes.get(p.id) ?? 0;
  const d = spawnDaemon(p.configPath, env);
  children.push(d);
  await waitUntil('the daemon subscribed', () => (broker.subscribes.get(p.id) ?? 0) > before, 20_000, () => (d.child.exitCode !== null ? `it exited: ${d.stderr()}` : null));
  return d;
}

async function status(root: string): Promise<AgentStatus> {
  const r = await runAgent(['agent', 'status', '--root', root, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as AgentStatus;
}

const partOf = (p: ProbeFixture, ref: PackRef): string => join(layoutOf(p.root).staging, 'downloads', `${ref.sha256}.spk.part`);

function firstProgress(p: ProbeFixture, commandId: string): () => boolean {
  return () => rawEvents(broker.received, p.id).some((e) => e.type === 'download-progress' && e.commandId === commandId);
}

/** Every event the server kept is there once, in seq order, none missing (last wills aside). */
function expectCompleteStream(p: ProbeFixture): void {
  const raw = rawEvents(broker.received, p.id).filter((e) => !(e.type === 'offline' && e.id.startsWith('offline-')));
  const seqs = dedupe(raw).unique.map((e) => e.seq);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
}

/**
 * A probe on 1.0.0 (installed by the engine directly) with its collector password, whose agent
 * is killed with SIGKILL at crash point `point` while installing 1.1.0 by command; returns the
 * command and the probe's status with the interrupted deployment.
 */
async function killedInstalling(point: string, secret: string): Promise<{ p: ProbeFixture; cmd: ReturnType<typeof installCommand>; mid: AgentStatus }> {
  const p = await probe();
  const engine = await openEngine(p.root, s);
  try {
    expect((await engine.install(s.packs['1.0.0'])).committed).toBe(true);
  } finally {
    engine.close();
  }
  await setSiteVar(layoutOf(p.root).siteVars, 'CollectorPassword', secret);
  const crashing = await start(p, { SONDE_CRASH_AT: point });
  const cmd = installCommand(p.id, packs['1.1.0']);
  await server.command(p.id, cmd);
  expect((await crashing.exited).signal).toBe('SIGKILL');
  const mid = await status(p.root);
  expect(mid.unfinished).not.toBeNull();
  return { p, cmd, mid };
}

describe('sonde agent run: kill -9', () => {
  it('resumes a download killed mid-way with a Range request from its .part, and the probe ends whole', async () => {
    const p = await probe();
    const first = await start(p);
    // About 2.5 s for the pack: the kill lands mid-download.
    http.setPackBehaviour({ throttle: { bytes: 1024, everyMs: 150 } });
    const cmd = installCommand(p.id, packs['1.0.0']);
    await server.command(p.id, cmd);
    await waitUntil('the first download-progress', firstProgress(p, cmd.commandId), 20_000);
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const kept = (await stat(partOf(p, packs['1.0.0']))).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(packs['1.0.0'].size);

    http.setPackBehaviour({});
    const requestsBefore = http.packRequests('1.0.0').length;
    const second = await start(p);
    const outcome = await waitUntil('the outcome after the restart', () => outcomeOf(broker.received, p.id, cmd.commandId), 30_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    const resumed = http.packRequests('1.0.0').slice(requestsBefore);
    expect(resumed[0]!.range).toBe(`bytes=${kept}-`);
    expect(resumed[0]!.status).toBe(206);
    expect(resumed[0]!.bytesSent).toBe(packs['1.0.0'].size - kept);
    const events = dedupe(rawEvents(broker.received, p.id)).unique.filter((e) => e.commandId === cmd.commandId);
    expect(events.filter((e) => e.type === 'download-started').map((e) => e.message ?? '')).toEqual(['', 'resumed after a restart']);
    expect(events.some((e) => e.type === 'download-failed')).toBe(false);
    expectCompleteStream(p);

    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    const st = await status(p.root);
    expect(st).toMatchObject({ version: '1.0.0', unfinished: null, app: { running: true } });
    expect(await history(p.root)).toHaveLength(1);
  });

  it('rolls back an install killed at stage:slot-written, runs the command again after the restart, and gives the command one outcome', async () => {
    const { p, cmd, mid } = await killedInstalling('stage:slot-written', 'canary-kill-Vb8-secret');
    expect(outcomeOf(broker.received, p.id, cmd.commandId)).toBeUndefined();

    const second = await start(p);
    const committed = (): boolean => rawEvents(broker.received, p.id).some((e) => e.type === 'install-outcome' && e.commandId === cmd.commandId && e.outcome === 'committed');
    await waitUntil('the committed outcome after the restart', committed, 30_000);
    // The interrupted attempt was rolled back by the resume table and reported as the deployment
    // it was, without the command: a server keeps a command's first final outcome, and this one
    // is not the command's verdict. The run after the restart is.
    const outcomes = dedupe(rawEvents(broker.received, p.id)).unique.filter((e) => e.type === 'install-outcome');
    expect(outcomes.map((e) => [e.outcome, e.code ?? null, e.version, e.commandId])).toEqual([
      ['failed', 'INSTALL_INTERRUPTED', '1.1.0', undefined],
      ['committed', null, '1.1.0', cmd.commandId],
    ]);
    expect(outcomes[0]!.deploymentId).toBe(mid.unfinished!.id);
    expectCompleteStream(p);

    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    const st = await status(p.root);
    expect(st).toMatchObject({ version: '1.1.0', dbVersion: 2, configVersion: 2, unfinished: null, app: { running: true } });
    expect((await history(p.root)).map((d) => d.state)).toEqual(['committed', 'failed', 'committed']);
  });
  it('finishes an install killed at commit:persisted after the restart: one committed outcome for the command, which is not run again', async () => {
    const { p, cmd, mid } = await killedInstalling('commit:persisted', 'commit-kill-Qz3-secret');
    const second = await start(p);
    const outcome = await waitUntil('the outcome after the restart', () => outcomeOf(broker.received, p.id, cmd.commandId), 30_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.1.0', deploymentId: mid.unfinished!.id });
    // Give a wrongly repeated run the time to show itself: download events or a second outcome.
    await new Promise((r) => setTimeout(r, 1500));
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    const events = dedupe(rawEvents(broker.received, p.id)).unique;
    expect(events.filter((e) => e.type === 'install-outcome').map((e) => [e.outcome, e.commandId])).toEqual([['committed', cmd.commandId]]);
    expect(events.filter((e) => e.type === 'download-started' && e.commandId === cmd.commandId)).toHaveLength(1);
    expect((await history(p.root)).map((d) => d.state)).toEqual(['committed', 'committed']);
    expectCompleteStream(p);
  });
});

describe('sonde agent run: SIGTERM drains', () => {
  it('finishes an install under way, delivers its outcome, then exits 0', async () => {
    const p = await probe();
    const d = await start(p);
    const cmd = installCommand(p.id, packs['1.0.0']);
    await server.command(p.id, cmd);
    await waitUntil('install-state verified', () => rawEvents(broker.received, p.id).some((e) => e.type === 'install-state' && e.state === 'verified'), 20_000);
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });

    const draining = d.logs().find((l) => l.msg === 'draining');
    expect(draining).toMatchObject({ signal: 'SIGTERM' });
    const outcome = outcomeOf(broker.received, p.id, cmd.commandId);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    // The outcome came after the signal: the drain waited for the install.
    expect(Date.parse(outcome!.at)).toBeGreaterThan(Number(draining!.time));
    const t = trace(dedupe(rawEvents(broker.received, p.id)).unique);
    expect(t.at(-1)).toBe('offline');
    expect(d.logs().some((l) => l.msg === 'agent stopped')).toBe(true);
    expect(await status(p.root)).toMatchObject({ version: '1.0.0', unfinished: null });
  });

  it('parks a download under way, exits 0, and the next start resumes it from its .part', async () => {
    const p = await probe();
    const d = await start(p);
    http.setPackBehaviour({ throttle: { bytes: 1024, everyMs: 150 } });
    const cmd = installCommand(p.id, packs['1.0.0']);
    await server.command(p.id, cmd);
    await waitUntil('the first download-progress', firstProgress(p, cmd.commandId), 20_000);
    const signalled = Date.now();
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    // Parked, not finished: no failure reported, the .part kept, nothing installed.
    expect(Date.now() - signalled).toBeLessThan(5000);
    expect(rawEvents(broker.received, p.id).some((e) => e.commandId === cmd.commandId && (e.type === 'download-failed' || e.type === 'download-complete'))).toBe(false);
    const kept = (await stat(partOf(p, packs['1.0.0']))).size;
    expect(kept).toBeGreaterThan(0);
    expect(await history(p.root)).toEqual([]);

    http.setPackBehaviour({});
    const requestsBefore = http.packRequests('1.0.0').length;
    const again = await start(p);
    const outcome = await waitUntil('the outcome after the restart', () => outcomeOf(broker.received, p.id, cmd.commandId), 30_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    expect(http.packRequests('1.0.0')[requestsBefore]!.range).toBe(`bytes=${kept}-`);
    again.child.kill('SIGTERM');
    expect(await again.exited).toEqual({ code: 0, signal: null });
  });
});
