#!/usr/bin/env node
/**
 * bench/server-retention (issue 23): the server database after a simulated year of a fleet, with
 * the default retention. Day by day, for each probe: its events (state changes, reconnects, an
 * install's states and outcome), a monthly install command and deployment, and staff audit rows;
 * the retention pass runs once a simulated day, as the server runs it every hour. Prints the
 * database size at each quarter and at the end, beside what the rows inserted would have taken
 * without retention (their count times the measured bytes per row).
 * Usage: node dist/bench/src/server-retention.js [--probes 1000] [--days 365] [--events-per-day 8]
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_RETENTION } from '../../server/src/store/retention.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { benchArgs } from './bench-args.js';

const { arg, num } = benchArgs('Usage: bench/server-retention [--probes 1000] [--days 365] [--events-per-day 8] [--dir .bench/server-retention]', { values: ['days', 'dir', 'events-per-day', 'probes'] });
const probes = num('probes', 1000, 1);
const days = num('days', 365, 1);
const eventsPerDay = num('events-per-day', 8, 1);
const work = resolve(arg('dir', '.bench/server-retention'));
const DAY = 86_400_000;
const MiB = 1024 * 1024;

function size(path: string): number {
  let n = 0;
  for (const f of [path, `${path}-wal`]) n += statSync(f, { throwIfNoEntry: false })?.size ?? 0;
  return n;
}

async function main(): Promise<void> {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const path = join(work, 'sonde.db');
  const store = SqliteStore.open(path);
  const sql = store.sql;
  const start = Date.parse('2026-01-01T00:00:00.000Z');
  const body = JSON.stringify({ v: 1, type: 'install-state', state: 'trial', message: 'x'.repeat(120) });
  const insertEvent = 'INSERT INTO events (probe_id, event_id, seq, type, at, received_at, deployment_id, command_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)';
  const insertCommand =
    "INSERT INTO commands (command_id, probe_id, type, body, rollout_id, pack_sha256, status, deployment_id, created_at, sent_at, updated_at, finished_at) VALUES (?, ?, 'install', ?, NULL, ?, 'succeeded', ?, ?, ?, ?, ?)";
  const insertDeployment =
    "INSERT INTO deployments (probe_id, deployment_id, command_id, pack_sha256, version, state, outcome, started_at, updated_at, finished_at) VALUES (?, ?, ?, ?, '1.0.0', 'committed', 'committed', ?, ?, ?)";
  const seq = new Map<string, number>();
  const inserted = { events: 0, commands: 0, deployments: 0, audit: 0 };
  const t0 = Date.now();
  console.log(`server-retention: ${probes} probes, ${days} days, ${eventsPerDay} events per probe per day, default retention (events ${DEFAULT_RETENTION.eventsMaxAgeMs / DAY} d / ${DEFAULT_RETENTION.eventsPerProbe} per probe, history ${DEFAULT_RETENTION.historyMaxAgeMs / DAY} d)`);
  for (let d = 0; d < days; d++) {
    const dayStart = start + d * DAY;
    sql.tx(() => {
      for (let p = 0; p < probes; p++) {
        const probe = `probe-${p}`;
        for (let e = 0; e < eventsPerDay; e++) {
          const at = new Date(dayStart + ((e + 1) * DAY) / (eventsPerDay + 1)).toISOString();
          const s = (seq.get(probe) ?? 0) + 1;
          seq.set(probe, s);
          sql.run(insertEvent, probe, `e-${d}-${e}`, s, 'install-state', at, at, null, null, body);
          inserted.events++;
        }
        if ((d + p) % 30 === 0) {
          const at = new Date(dayStart + DAY / 2).toISOString();
          const id = `c-${d}-${p}`;
          sql.run(insertCommand, id, probe, '{"v":1,"type":"install"}', 'a'.repeat(64), `d-${d}-${p}`, at, at, at, at);
          sql.run(insertDeployment, probe, `d-${d}-${p}`, id, 'a'.repeat(64), at, at, at);
          inserted.commands++;
          inserted.deployments++;
        }
      }
    });
    for (let a = 0; a < 50; a++) {
      await store.audit.append({ at: new Date(dayStart + a * 60_000).toISOString(), actor: 'staff:tok', actorName: 'operator', action: 'POST /api/v1/rollouts', target: 'ro-x', status: 201, detail: { n: a } });
      inserted.audit++;
    }
    await store.prune(DEFAULT_RETENTION, new Date(dayStart + DAY));
    if ((d + 1) % Math.ceil(days / 4) === 0 || d === days - 1) {
      const rows = (t: string): number => sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t}`)!.n;
      console.log(`  day ${d + 1}: ${(size(path) / MiB).toFixed(1)} MiB on disk; rows kept: events ${rows('events')}, commands ${rows('commands')}, deployments ${rows('deployments')}, audit ${rows('audit')} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
  sql.run('PRAGMA wal_checkpoint(TRUNCATE)');
  const kept = size(path);
  const pages = sql.get<{ page_count: number }>('PRAGMA page_count')!.page_count;
  const free = sql.get<{ freelist_count: number }>('PRAGMA freelist_count')!.freelist_count;
  const pageSize = sql.get<{ page_size: number }>('PRAGMA page_size')!.page_size;
  const eventRows = sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM events')!.n;
  const eventBytes = sql.get<{ n: number }>("SELECT SUM(pgsize) AS n FROM dbstat WHERE name IN ('events', 'events_probe_seq', 'events_received', 'sqlite_autoindex_events_1')")?.n ?? null;
  await store.close();
  const perEvent = eventBytes !== null && eventRows > 0 ? eventBytes / eventRows : null;
  console.log(`  in use ${(((pages - free) * pageSize) / MiB).toFixed(1)} MiB of ${(kept / MiB).toFixed(1)} MiB (free pages are reused, not returned)`);
  if (perEvent !== null) console.log(`  without retention the ${inserted.events} events alone would take about ${((inserted.events * perEvent) / MiB).toFixed(0)} MiB (${perEvent.toFixed(0)} bytes per event row with its indexes)`);
  console.log(`server-retention: ${(kept / MiB).toFixed(1)} MiB after ${days} days of ${probes} probes with the default retention (inserted: ${inserted.events} events, ${inserted.commands} commands, ${inserted.deployments} deployments, ${inserted.audit} audit rows)`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
