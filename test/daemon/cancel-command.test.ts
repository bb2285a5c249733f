import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../../base/src/protocol/messages.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { daemonBed, type DaemonBed } from '../helpers/daemon-bed.js';
import { history, installCommand, outcomeOf, rawEvents, waitUntil, type ProbeFixture } from '../helpers/daemon-harness.js';

/**
 * A `cancel` from the server (issue 23, "A cancel stops a queued or downloading install
 * cleanly"): a queued command is dropped, a download is stopped and its partial file removed, both
 * reported with COMMAND_CANCELLED; an install already under way runs to its outcome.
 */
let bed: DaemonBed;
let counter = 0;

beforeAll(async () => {
  bed = await daemonBed('sonde-daemon-cancel-');
}, 180_000);

afterEach(async () => {
  bed.http.setPackBehaviour({});
  await bed.stopDaemons();
});

afterAll(async () => {
  await bed?.close();
});

async function probeWithDaemon(): Promise<ProbeFixture> {
  const p = await bed.probe();
  await bed.daemon(p);
  return p;
}

function cancel(probeId: string, target: string): Command {
  return { v: 1, type: 'cancel', commandId: `cancel-${++counter}`, probeId, issuedAt: new Date().toISOString(), target };
}

const eventsOf = (p: ProbeFixture, commandId: string) => rawEvents(bed.broker.received, p.id).filter((e) => e.commandId === commandId);

describe('a cancel from the server', () => {
  it('drops a queued install and stops a download, removing its partial file; both say COMMAND_CANCELLED and nothing is installed', async () => {
    const p = await probeWithDaemon();
    const one = bed.http.addPack('1.0.0', await readFile(bed.samples.packs['1.0.0']));
    const two = bed.http.addPack('1.1.0', await readFile(bed.samples.packs['1.1.0']));
    // A slow link: the first download takes minutes unless something stops it.
    bed.http.setPackBehaviour({ throttle: { bytes: 1024, everyMs: 200 } });
    const first = installCommand(p.id, one);
    const second = installCommand(p.id, two);
    await bed.server.command(p.id, first);
    await waitUntil('the download under way', () => eventsOf(p, first.commandId).some((e) => e.type === 'download-progress'));
    await bed.server.command(p.id, second);
    await waitUntil('the second queued', () => eventsOf(p, second.commandId).some((e) => e.type === 'command-accepted'));
    const downloads = join(layoutOf(p.root).staging, 'downloads');
    expect(await readdir(downloads)).toEqual([`${one.sha256}.spk.part`]);

    await bed.server.command(p.id, cancel(p.id, second.commandId));
    const dropped = await waitUntil('the queued one refused', () => eventsOf(p, second.commandId).find((e) => e.type === 'command-refused'));
    expect(dropped).toMatchObject({ code: 'COMMAND_CANCELLED', message: 'cancelled by the server before it started' });

    await bed.server.command(p.id, cancel(p.id, first.commandId));
    const stopped = await waitUntil('the download stopped', () => eventsOf(p, first.commandId).find((e) => e.type === 'download-failed'), 10_000);
    expect(stopped).toMatchObject({ code: 'COMMAND_CANCELLED' });
    expect(await readdir(downloads)).toEqual([]);
    expect(await history(p.root)).toEqual([]);
    expect(bed.http.packRequests('1.1.0')).toEqual([]);
    expect(eventsOf(p, first.commandId).some((e) => e.type === 'download-complete')).toBe(false);

    // The queue is free again: the next install runs whole.
    bed.http.setPackBehaviour({});
    const again = installCommand(p.id, one);
    await bed.server.command(p.id, again);
    expect(await waitUntil('the outcome', () => outcomeOf(bed.broker.received, p.id, again.commandId), 40_000)).toMatchObject({ outcome: 'committed', version: '1.0.0' });
  });

  it('honours the rollout\'s download window from the command: waits outside it, fetching nothing, and a cancel then ends it cleanly', async () => {
    const p = await probeWithDaemon();
    const one = bed.http.addPack('1.0.0', await readFile(bed.samples.packs['1.0.0']));
    // A window two hours from now (UTC), an hour long: closed now.
    const hhmm = (h: number): string => `${String((new Date().getUTCHours() + h) % 24).padStart(2, '0')}:00`;
    const cmd = { ...installCommand(p.id, one), download: { window: { start: hhmm(2), end: hhmm(3), timeZone: 'UTC' } } };
    const before = bed.http.packRequests('1.0.0').length;
    await bed.server.command(p.id, cmd);
    const waiting = await waitUntil('the wait said', () => eventsOf(p, cmd.commandId).find((e) => e.type === 'download-progress' && /waiting for its download window/.test(e.message ?? '')));
    expect(waiting.message).toMatch(/opens in \d+ min/);
    expect(bed.http.packRequests('1.0.0').length).toBe(before);
    await bed.server.command(p.id, cancel(p.id, cmd.commandId));
    expect(await waitUntil('the cancel', () => eventsOf(p, cmd.commandId).find((e) => e.type === 'download-failed'))).toMatchObject({ code: 'COMMAND_CANCELLED' });
    expect(bed.http.packRequests('1.0.0').length).toBe(before);
  });

  it('lets an install already past its download run to its outcome, which is reported', async () => {
    const p = await probeWithDaemon();
    const one = bed.http.addPack('1.0.0', await readFile(bed.samples.packs['1.0.0']));
    const cmd = installCommand(p.id, one);
    await bed.server.command(p.id, cmd);
    await waitUntil('the install under way', () => rawEvents(bed.broker.received, p.id).some((e) => e.type === 'install-state'), 30_000);
    await bed.server.command(p.id, cancel(p.id, cmd.commandId));
    expect(await waitUntil('the outcome', () => outcomeOf(bed.broker.received, p.id, cmd.commandId), 40_000)).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    expect(eventsOf(p, cmd.commandId).some((e) => e.code === 'COMMAND_CANCELLED')).toBe(false);
  });
});
