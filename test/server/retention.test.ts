import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_RETENTION, type RetentionPolicy } from '../../server/src/store/retention.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { tempDir } from './harness.js';

/**
 * Bounded server state (issue 23): events, audit rows, finished commands and deployments go by
 * age and by count; nothing under way, and no rollout still running, loses a row.
 */
const DAY = 86_400_000;
const NOW = new Date('2027-06-01T12:00:00.000Z');
const ago = (days: number): string => new Date(NOW.getTime() - days * DAY).toISOString();
let store: SqliteStore;
let dir: string;

beforeEach(async () => {
  dir = await tempDir('sonde-retention-');
  store = SqliteStore.open(`${dir}/sonde.db`);
});
afterEach(async () => {
  await store.close();
});

function event(probe: string, id: string, seq: number, receivedAt: string): void {
  store.sql.run(
    'INSERT INTO events (probe_id, event_id, seq, type, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)',
    probe,
    id,
    seq,
    'online',
    receivedAt,
    receivedAt,
    '{}',
  );
}

function command(id: string, rolloutId: string | null, finishedAt: string | null): void {
  store.sql.run(
    'INSERT INTO commands (command_id, probe_id, type, body, rollout_id, status, created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    id,
    'p1',
    'install',
    '{}',
    rolloutId,
    finishedAt ? 'succeeded' : 'sent',
    ago(500),
    ago(500),
    finishedAt,
  );
}

function deployment(probe: string, id: string, startedAt: string, finishedAt: string | null): void {
  store.sql.run(
    'INSERT INTO deployments (probe_id, deployment_id, started_at, updated_at, finished_at, outcome) VALUES (?, ?, ?, ?, ?, ?)',
    probe,
    id,
    startedAt,
    startedAt,
    finishedAt,
    finishedAt ? 'committed' : null,
  );
}

const count = (table: string): number => (store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`)!).n;
const ids = (sql: string): string[] => store.sql.all<{ id: string }>(sql).map((r) => r.id);

describe('retention', () => {
  it('deletes events older than their age, and beyond each probe\'s newest count', async () => {
    event('p1', 'old', 1, ago(91));
    event('p1', 'young', 2, ago(89));
    for (let i = 0; i < 30; i++) event('p2', `e${i}`, i, ago(1));
    const policy: RetentionPolicy = { ...DEFAULT_RETENTION, eventsPerProbe: 10 };
    const r = await store.prune(policy, NOW);
    expect(r.events).toBe(21);
    expect(ids("SELECT event_id AS id FROM events WHERE probe_id = 'p1'")).toEqual(['young']);
    expect(ids("SELECT event_id AS id FROM events WHERE probe_id = 'p2' ORDER BY seq")).toEqual(Array.from({ length: 10 }, (_, i) => `e${i + 20}`));
  });

  it('deletes audit rows by age and beyond the newest count', async () => {
    for (const [at, action] of [
      [ago(401), 'ancient'],
      [ago(10), 'a'],
      [ago(5), 'b'],
      [ago(1), 'c'],
    ] as const) {
      await store.audit.append({ at, actor: 'staff:t', actorName: 'admin', action, target: null, status: 200, detail: null });
    }
    const r = await store.prune({ ...DEFAULT_RETENTION, auditMaxRows: 2 }, NOW);
    expect(r.audit).toBe(2);
    expect(ids('SELECT action AS id FROM audit ORDER BY id')).toEqual(['b', 'c']);
  });

  it('deletes old finished commands, but never one under way or of a rollout still running', async () => {
    store.sql.run(
      "INSERT INTO rollouts (id, pack_sha256, pack_version, pack_product, target, strategy, windows, state, wave, wave_count, has_canary, created_by, created_by_name, created_at, updated_at) VALUES ('ro-running', 'x', '1', 'p', '{}', '{}', '[]', 'running', 0, 1, 0, 'a', 'a', ?, ?)",
      ago(600),
      ago(600),
    );
    command('old-done', null, ago(401));
    command('old-running-rollout', 'ro-running', ago(401));
    command('old-unfinished', null, null);
    command('young-done', null, ago(10));
    const r = await store.prune(DEFAULT_RETENTION, NOW);
    expect(r.commands).toBe(1);
    expect(ids('SELECT command_id AS id FROM commands ORDER BY command_id')).toEqual(['old-running-rollout', 'old-unfinished', 'young-done']);
  });

  it('keeps each probe\'s newest finished deployments and every unfinished one', async () => {
    deployment('p1', 'ancient', ago(500), ago(500));
    for (let i = 0; i < 5; i++) deployment('p1', `d${i}`, ago(50 - i), ago(50 - i));
    deployment('p1', 'under-way', ago(1), null);
    const r = await store.prune({ ...DEFAULT_RETENTION, deploymentsPerProbe: 3 }, NOW);
    expect(r.deployments).toBe(4);
    expect(ids("SELECT deployment_id AS id FROM deployments ORDER BY started_at")).toEqual(['d3', 'd4', 'under-way']);
    expect(count('deployments')).toBe(3);
  });
});
