import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ProbeEvent, ProbeState } from '../../base/src/protocol/messages.js';
import { hashToken, newTokenId, newTokenSecret } from '../../server/src/auth/tokens.js';
import { IngestQueue } from '../../server/src/inventory/ingest-queue.js';
import { Metrics } from '../../server/src/metrics/registry.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { probeState } from './harness.js';

/**
 * The ingest queue's hold (what a fan-out takes): states keep being committed, events wait and
 * then follow in arrival order, in batches; flush() writes everything, held or not.
 */
const PROBES = ['hold-a', 'hold-b', 'hold-c'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const state = (probeId: string, at: string): ProbeState => probeState(probeId, { at });

let seq = 0;
function event(probeId: string, n: number): ProbeEvent {
  return { v: 1, id: `ev-${probeId}-${n}`, seq: ++seq, probeId, at: new Date().toISOString(), type: 'download-progress', message: `event ${n}` } as ProbeEvent;
}

describe('the ingest queue held by a fan-out', () => {
  let dir: string;
  let store: SqliteStore;
  let queue: IngestQueue;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sonde-hold-'));
    store = SqliteStore.open(join(dir, 'server.db'));
    for (const id of PROBES) {
      await store.probes.enroll(id, { httpBase: 'http://127.0.0.1:9', mqttPasswordHash: 'x', token: { id: newTokenId(), kind: 'probe', name: id, role: null, probeId: id, hash: hashToken(newTokenSecret()) } });
    }
    // maxBatch 4: a backlog of events drains over several batches.
    queue = new IngestQueue(store, pino({ level: 'silent' }), new Metrics(), 5, 4);
    queue.start();
  });

  afterEach(async () => {
    await queue.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const eventIds = (): string[] => store.sql.all<{ event_id: string }>('SELECT event_id FROM events ORDER BY rowid').map((r) => r.event_id);
  const stateAt = (id: string): string | null => store.sql.get<{ state_at: string | null }>('SELECT state_at FROM probes WHERE id = ?', id)!.state_at;

  it('commits states while held, keeps the events, then writes them all in arrival order once released', async () => {
    const release = queue.hold();
    for (let n = 0; n < 10; n++) queue.addEvent(PROBES[n % 3]!, event(PROBES[n % 3]!, n), performance.now());
    queue.addState('hold-a', state('hold-a', '2026-11-22T10:00:00.000Z'), performance.now());
    await sleep(60);
    expect(stateAt('hold-a')).toBe('2026-11-22T10:00:00.000Z');
    expect(eventIds()).toEqual([]);
    expect(queue.depth).toBe(10);

    // Holds nest: the events wait for the last one.
    const second = queue.hold();
    release();
    release(); // a second call of the same release is a no-op
    await sleep(60);
    expect(eventIds()).toEqual([]);
    second();
    for (let i = 0; i < 100 && queue.depth > 0; i++) await sleep(10);
    expect(eventIds()).toEqual(Array.from({ length: 10 }, (_, n) => `ev-${PROBES[n % 3]}-${n}`));
  });

  it('writes the held events too when flushed (stop, tests)', async () => {
    const release = queue.hold();
    for (let n = 0; n < 9; n++) queue.addEvent('hold-b', event('hold-b', n), performance.now());
    await queue.flush();
    expect(eventIds()).toHaveLength(9);
    release();
  });

  it('drains a backlog one batch per turn of the event loop, so the sockets are read between batches', async () => {
    // Each turn of the loop, as the sockets are read, a few more events arrive; the turn
    // counter is a check-phase callback that re-queues itself. A linger of a minute leaves the
    // drain to the writes queued for the next turn (a timer's batch would run in the timers phase
    // of the same turn, with the poll phase between, and blur the count).
    const draining = new IngestQueue(store, pino({ level: 'silent' }), new Metrics(), 60_000, 4);
    draining.start();
    let turn = 0;
    let n = 0;
    let arriving = true;
    let ticking = true;
    const arrive = (count: number): void => {
      for (let i = 0; i < count; i++, n++) draining.addEvent(PROBES[n % 3]!, event(PROBES[n % 3]!, n), performance.now());
    };
    const tick = (): void => {
      turn++;
      if (arriving) arrive(20);
      if (ticking) setImmediate(tick);
    };
    const turns: number[] = [];
    const ingest = store.ingest.bind(store);
    store.ingest = async (batch) => {
      if (batch.events.length > 0) turns.push(turn);
      return ingest(batch);
    };
    // A fan-out's acknowledgements, held until it is out: the backlog.
    const release = draining.hold();
    arrive(3000);
    setImmediate(tick);
    release();
    for (let i = 0; i < 200 && turns.length < 4; i++) await sleep(10);
    arriving = false;
    // The last few (fewer than a batch) wait for the linger; stop() writes them.
    for (let i = 0; i < 200 && draining.depth >= 4; i++) await sleep(10);
    await draining.stop();
    ticking = false;
    expect(eventIds()).toHaveLength(n);
    expect(turns.length).toBeGreaterThanOrEqual(4);
    // Before: every event that arrived with a backlog waiting queued a write of its own, and all
    // of them ran back to back in the next turn, the whole backlog with no socket read between.
    expect(new Set(turns).size).toBe(turns.length);
  });

  it('without a hold, writes events as they come', async () => {
    queue.addEvent('hold-c', event('hold-c', 1), performance.now());
    for (let i = 0; i < 100 && eventIds().length === 0; i++) await sleep(5);
    expect(eventIds()).toEqual(['ev-hold-c-1']);
  });
});
