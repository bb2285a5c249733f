import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insideWindow, nextOpening, windowSchema } from '../../server/src/rollouts/windows.js';
import type { TestServer } from './harness.js';
import { ids, SimFleet, startRolloutServer, statusOf, targetsOf, TestClock, waitForState } from './rollout-fleet.js';

/**
 * Maintenance windows: a rollout sends commands only inside one of its windows (times of day in
 * UTC or at an offset; over midnight; on given days). Outside, its probes stay pending; the
 * server's clock is moved by the test instead of waiting for the time of day.
 */
describe('insideWindow', () => {
  const w = (o: Record<string, unknown>) => windowSchema.parse(o);
  it.each([
    { what: 'inside a daytime window', window: { start: '09:00', end: '17:00' }, at: '2026-03-04T12:00:00Z', inside: true },
    { what: 'at its end (excluded)', window: { start: '09:00', end: '17:00' }, at: '2026-03-04T17:00:00Z', inside: false },
    { what: 'at its start (included)', window: { start: '09:00', end: '17:00' }, at: '2026-03-04T09:00:00Z', inside: true },
    { what: 'before a window over midnight', window: { start: '22:00', end: '04:00' }, at: '2026-03-04T21:59:00Z', inside: false },
    { what: 'in the evening part of a window over midnight', window: { start: '22:00', end: '04:00' }, at: '2026-03-04T23:30:00Z', inside: true },
    { what: 'in the morning part of a window over midnight', window: { start: '22:00', end: '04:00' }, at: '2026-03-05T03:59:00Z', inside: true },
    { what: 'at an offset: 01:00–03:00 at +02:00 is 23:00–01:00 UTC', window: { start: '01:00', end: '03:00', utcOffset: '+02:00' }, at: '2026-03-04T23:30:00Z', inside: true },
    { what: 'at an offset, outside', window: { start: '01:00', end: '03:00', utcOffset: '+02:00' }, at: '2026-03-04T01:30:00Z', inside: false },
    { what: 'at a negative offset', window: { start: '20:00', end: '22:00', utcOffset: '-05:00' }, at: '2026-03-05T02:00:00Z', inside: true },
    { what: 'start = end: the whole day', window: { start: '00:00', end: '00:00' }, at: '2026-03-04T15:00:00Z', inside: true },
    { what: 'on an allowed day (a Wednesday)', window: { start: '09:00', end: '17:00', days: ['wed'] }, at: '2026-03-04T12:00:00Z', inside: true },
    { what: 'on another day', window: { start: '09:00', end: '17:00', days: ['sat', 'sun'] }, at: '2026-03-04T12:00:00Z', inside: false },
    { what: "on Saturday morning, in Friday's window over midnight", window: { start: '22:00', end: '04:00', days: ['fri'] }, at: '2026-03-07T02:00:00Z', inside: true },
    { what: "on Friday morning, outside Friday's window over midnight", window: { start: '22:00', end: '04:00', days: ['fri'] }, at: '2026-03-06T02:00:00Z', inside: false },
    { what: 'on a day that is another in the offset (Thursday 23:30 UTC is Friday at +02:00)', window: { start: '00:00', end: '06:00', utcOffset: '+02:00', days: ['fri'] }, at: '2026-03-05T23:30:00Z', inside: true },
  ])('is $inside $what', ({ window, at, inside }) => {
    expect(insideWindow(w(window), new Date(at))).toBe(inside);
  });

  it('finds when the next window opens', () => {
    const windows = [w({ start: '01:00', end: '03:00', utcOffset: '+02:00' })];
    expect(nextOpening(windows, new Date('2026-03-04T12:00:30Z'))?.toISOString()).toBe('2026-03-04T23:00:00.000Z');
    expect(nextOpening(windows, new Date('2026-03-04T23:30:00Z'))).toBeNull();
  });
});

describe('a rollout with a maintenance window', () => {
  let s: TestServer;
  let fleet: SimFleet;
  let pack: { sha256: string; version: string };
  const clock = new TestClock();

  beforeAll(async () => {
    clock.set(new Date('2026-03-04T12:00:00Z'));
    const started = await startRolloutServer({ engine: { now: clock.now } });
    s = started.s;
    pack = started.packs['1.1.0']!;
    fleet = await SimFleet.start(s, ids('mw', 6), { newVersion: pack.version, oldVersion: '1.0.0' });
  });
  afterAll(async () => {
    await fleet?.close();
    await s?.close();
  });

  it('holds every command outside the window, sends inside it, and holds the next wave when the window has closed again', async () => {
    const r = await s.api<{ id: string; state: string }>('POST', '/api/v1/rollouts', {
      body: {
        packSha256: pack.sha256,
        target: { channel: 'stable' },
        strategy: { canary: { probes: 2 }, waves: [100], successThreshold: 1, advance: { mode: 'approval' } },
        // 01:00–03:00 at +02:00: 23:00–01:00 UTC
        windows: [{ start: '01:00', end: '03:00', utcOffset: '+02:00' }],
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = r.body.id;
    expect(r.body.state).toBe('running');
    await new Promise((res) => setTimeout(res, 400));
    const held = await statusOf(s, id);
    expect(held.window).toEqual({ open: false, nextOpening: '2026-03-04T23:00:00.000Z' });
    expect(held.progress).toMatchObject({ pending: 6, sent: 0 });
    expect(fleet.commanded().size).toBe(0);

    // 23:30 UTC: the window is open, the canary goes out and commits.
    clock.set(new Date('2026-03-04T23:30:00Z'));
    await waitForState(s, id, 'awaiting-approval', (b) => b.waves[0]!.committed === 2);
    expect(fleet.commanded(pack.sha256).size).toBe(2);

    // 02:00 UTC: closed again. The next wave is approved, but nothing goes out.
    clock.set(new Date('2026-03-05T02:00:00Z'));
    expect((await s.api('POST', `/api/v1/rollouts/${id}/approve`)).status).toBe(200);
    await new Promise((res) => setTimeout(res, 400));
    const waiting = await statusOf(s, id);
    expect(waiting).toMatchObject({ state: 'running', wave: 1, window: { open: false, nextOpening: '2026-03-05T23:00:00.000Z' } });
    expect(waiting.waves[1]).toMatchObject({ started: true, pending: 4 });
    expect(fleet.commanded(pack.sha256).size).toBe(2);

    // The next night the rest go out.
    clock.set(new Date('2026-03-05T23:05:00Z'));
    const done = await waitForState(s, id, 'completed', (b) => b.progress.committed === 6);
    expect(done.progress.updated).toBe(6);
    expect((await targetsOf(s, id)).every((t) => t.state === 'committed')).toBe(true);
  });
});
