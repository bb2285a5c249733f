import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../../base/src/protocol/messages.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { connectServerClient, SERVER_USER, startAedesBroker, type AedesBroker, type ServerClient } from '../helpers/broker.js';
import {
  daemonSamples,
  history,
  installCommand,
  makeProbe,
  outcomeOf,
  rawEvents,
  startDaemon,
  startFleetHttp,
  waitUntil,
  type FleetHttp,
  type InProcessDaemon,
  type ProbeFixture,
} from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';
import { stopApp } from '../helpers/probe.js';

/**
 * A `cancel` from the server (issue 23, "A cancel stops a queued or downloading install
 * cleanly"): a queued command is dropped, a download is stopped and its partial file removed, both
 * reported with COMMAND_CANCELLED; an install already under way runs to its outcome.
 */
const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let broker: AedesBroker;
let http: FleetHttp;
let server: ServerClient;
const tokens = new Map<string, string>();
const roots: string[] = [];
let running: InProcessDaemon[] = [];
let counter = 0;

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-cancel-');
  s = await daemonSamples();
  broker = await startAedesBroker();
  broker.addUser(SERVER_USER, SERVER_PASSWORD);
  http = await startFleetHttp(tokens);
  server = await connectServerClient(broker.url, SERVER_PASSWORD);
}, 180_000);

afterEach(async () => {
  http.setPackBehaviour({});
  for (const d of running) await d.stop().catch(() => undefined);
  running = [];
});

afterAll(async () => {
  for (const r of roots) await stopApp(r).catch(() => undefined);
  await server?.close();
  await broker?.close();
  await http?.close();
  await tmp?.cleanup();
});

async function probeWithDaemon(): Promise<ProbeFixture> {
  const p = await makeProbe(tmp.dir, { samples: s, mqttUrl: broker.url, httpBase: http.base });
  tokens.set(p.id, p.token);
  broker.addUser(p.id, p.token);
  roots.push(p.root);
  const before = broker.subscribes.get(p.id) ?? 0;
  running.push(await startDaemon(p));
  await waitUntil('the probe subscribed to its commands', () => (broker.subscribes.get(p.id) ?? 0) > before);
  return p;
}

function cancel(probeId: string, target: string): Command {
  return { v: 1, type: 'cancel', commandId: `cancel-${++counter}`, probeId, issuedAt: new Date().toISOString(), target };
}

const eventsOf = (p: ProbeFixture, commandId: string) => rawEvents(broker.received, p.id).filter((e) => e.commandId === commandId);

describe('a cancel from the server', () => {
  it('drops a queued install and stops a download, removing its partial file; both say COMMAND_CANCELLED and nothing is installed', async () => {
    const p = await probeWithDaemon();
    const one = http.addPack('1.0.0', await readFile(s.packs['1.0.0']));
    const two = http.addPack('1.1.0', await readFile(s.packs['1.1.0']));
    // A slow link: the first download takes minutes unless something stops it.
    http.setPackBehaviour({ throttle: { bytes: 1024, everyMs: 200 } });
    const first = installCommand(p.id, one);
    const second = installCommand(p.id, two);
    await server.command(p.id, first);
    await waitUntil('the download under way', () => eventsOf(p, first.commandId).some((e) => e.type === 'download-progress'));
    await server.command(p.id, second);
    await waitUntil('the second queued', () => eventsOf(p, second.commandId).some((e) => e.type === 'command-accepted'));
    const downloads = join(layoutOf(p.root).staging, 'downloads');
    expect(await readdir(downloads)).toEqual([`${one.sha256}.spk.part`]);

    await server.command(p.id, cancel(p.id, second.commandId));
    const dropped = await waitUntil('the queued one refused', () => eventsOf(p, second.commandId).find((e) => e.type === 'command-refused'));
    expect(dropped).toMatchObject({ code: 'COMMAND_CANCELLED', message: 'cancelled by the server before it started' });

    await server.command(p.id, cancel(p.id, first.commandId));
    const stopped = await waitUntil('the download stopped', () => eventsOf(p, first.commandId).find((e) => e.type === 'download-failed'), 10_000);
    expect(stopped).toMatchObject({ code: 'COMMAND_CANCELLED' });
    expect(await readdir(downloads)).toEqual([]);
    expect(await history(p.root)).toEqual([]);
    expect(http.packRequests('1.1.0')).toEqual([]);
    expect(eventsOf(p, first.commandId).some((e) => e.type === 'download-complete')).toBe(false);

    // The queue is free again: the next install runs whole.
    http.setPackBehaviour({});
    const again = installCommand(p.id, one);
    await server.command(p.id, again);
    expect(await waitUntil('the outcome', () => outcomeOf(broker.received, p.id, again.commandId), 40_000)).toMatchObject({ outcome: 'committed', version: '1.0.0' });
  });

  it('honours the rollout\'s download window from the command: waits outside it, fetching nothing, and a cancel then ends it cleanly', async () => {
    const p = await probeWithDaemon();
    const one = http.addPack('1.0.0', await readFile(s.packs['1.0.0']));
    // A window two hours from now (UTC), an hour long: closed now.
    const hhmm = (h: number): string => `${String((new Date().getUTCHours() + h) % 24).padStart(2, '0')}:00`;
    const cmd = { ...installCommand(p.id, one), download: { window: { start: hhmm(2), end: hhmm(3), timeZone: 'UTC' } } };
    const before = http.packRequests('1.0.0').length;
    await server.command(p.id, cmd);
    const waiting = await waitUntil('the wait said', () => eventsOf(p, cmd.commandId).find((e) => e.type === 'download-progress' && /waiting for its download window/.test(e.message ?? '')));
    expect(waiting.message).toMatch(/opens in \d+ min/);
    expect(http.packRequests('1.0.0').length).toBe(before);
    await server.command(p.id, cancel(p.id, cmd.commandId));
    expect(await waitUntil('the cancel', () => eventsOf(p, cmd.commandId).find((e) => e.type === 'download-failed'))).toMatchObject({ code: 'COMMAND_CANCELLED' });
    expect(http.packRequests('1.0.0').length).toBe(before);
  });

  it('lets an install already past its download run to its outcome, which is reported', async () => {
    const p = await probeWithDaemon();
    const one = http.addPack('1.0.0', await readFile(s.packs['1.0.0']));
    const cmd = installCommand(p.id, one);
    await server.command(p.id, cmd);
    await waitUntil('the install under way', () => rawEvents(broker.received, p.id).some((e) => e.type === 'install-state'), 30_000);
    await server.command(p.id, cancel(p.id, cmd.commandId));
    expect(await waitUntil('the outcome', () => outcomeOf(broker.received, p.id, cmd.commandId), 40_000)).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    expect(eventsOf(p, cmd.commandId).some((e) => e.code === 'COMMAND_CANCELLED')).toBe(false);
  });
});
