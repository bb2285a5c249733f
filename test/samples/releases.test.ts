import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import semver from 'semver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONFIG_TEMPLATE_V1,
  SAMPLE_MIGRATIONS,
  SAMPLE_RELEASES,
  sampleRelease,
  type SampleRelease,
  type SampleReleaseVersion,
} from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';

/**
 * The release table as data: every upgrade path its `requires` ranges allow ends on a database
 * and config version the running app accepts, and every migration's down undoes its up.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-releases-');
});
afterAll(() => tmp.cleanup());

interface Probe {
  version: string;
  db: number;
  config: number;
  app: NonNullable<SampleRelease['app']>;
}

/** What the engine does to versions: migrations and ops files above the current version run. */
function install(probe: Probe | null, r: SampleRelease): Probe {
  if (probe === null) {
    if (r.kind !== 'product' || !r.app) throw new Error(`${r.version} cannot be a first install`);
  } else if (!semver.satisfies(probe.version, r.requires ?? '<0.0.0', { includePrerelease: true })) {
    throw new Error(`${r.version} requires ${r.requires}, installed ${probe.version}`);
  }
  const db = Math.max(probe?.db ?? 0, ...r.migrations.map((m) => m.version));
  const template = r.configTemplate?.configVersion;
  const config = Math.max(probe?.config ?? 0, typeof template === 'number' ? template : 0, ...r.configOps.map((o) => o.version));
  return { version: r.version, db, config, app: r.app ?? probe!.app };
}

describe('the sample release table', () => {
  const paths: SampleReleaseVersion[][] = [
    ['1.0.0', '1.1.0', '1.1.1'],
    ['1.0.0', '1.1.0', '1.2.0-bad'],
    ['1.0.0', '1.1.0', '1.1.1', '1.2.0-bad'],
    ['1.0.0', '1.1.0', '1.1.1', '1.2.0-crash'],
  ];
  it.each(paths.map((p) => [p.join(' -> '), p] as const))('lands every step of %s in the versions its app runs on', (_name, path) => {
    let probe: Probe | null = null;
    for (const v of path) {
      probe = install(probe, sampleRelease(v));
      expect(probe.db, `${v}: database`).toBeGreaterThanOrEqual(probe.app.db.min);
      expect(probe.db, `${v}: database`).toBeLessThanOrEqual(probe.app.db.max);
      expect(probe.config, `${v}: config`).toBeGreaterThanOrEqual(probe.app.config.min);
      expect(probe.config, `${v}: config`).toBeLessThanOrEqual(probe.app.config.max);
    }
  });

  it('refuses the paths the requires ranges exclude', () => {
    const on = (path: SampleReleaseVersion[]): void => {
      let probe: Probe | null = null;
      for (const v of path) probe = install(probe, sampleRelease(v));
    };
    expect(() => on(['1.0.0', '1.1.1'])).toThrow(/requires/);
    expect(() => on(['1.0.0', '1.2.0-bad'])).toThrow(/requires/);
    expect(() => on(['1.0.0', '1.1.0', '1.1.1', '1.1.0'])).toThrow(/requires/);
  });

  it('numbers migrations and config ops by the version they reach, ascending', () => {
    for (const r of SAMPLE_RELEASES) {
      for (const m of r.migrations) expect(m.name.startsWith(String(m.version).padStart(4, '0'))).toBe(true);
      for (const o of r.configOps) expect(o.name.startsWith(String(o.version).padStart(4, '0'))).toBe(true);
    }
    expect(CONFIG_TEMPLATE_V1.configVersion).toBe(1);
  });
});

describe('the sample migrations', () => {
  it('migrate rows up through every version and back down to the same data', async () => {
    await mkdir(tmp.dir, { recursive: true });
    const db = new Database(join(tmp.dir, 'chain.db'));
    db.exec(SAMPLE_MIGRATIONS[0]!.up);
    const insert = db.prepare('INSERT INTO measurements (target_id, taken_at, latency_ms) VALUES (?, ?, ?)');
    const latencies = [12.5, 45, 80, 91.3, 3.1];
    latencies.forEach((l, i) => insert.run((i % 3) + 1, `2025-01-01T00:00:0${i}Z`, l));
    const v1 = db.prepare('SELECT id, target_id, taken_at, latency_ms FROM measurements ORDER BY id').all();

    db.exec(SAMPLE_MIGRATIONS[1]!.up);
    const severities = db.prepare('SELECT severity FROM measurements ORDER BY id').pluck().all();
    expect(severities).toEqual(['ok', 'warning', 'critical', 'critical', 'ok']);
    expect(db.prepare('SELECT measurement_id, severity FROM alarms ORDER BY id').all()).toEqual([
      { measurement_id: 2, severity: 'warning' },
      { measurement_id: 3, severity: 'critical' },
      { measurement_id: 4, severity: 'critical' },
    ]);

    db.exec(SAMPLE_MIGRATIONS[2]!.up);
    expect(db.prepare('SELECT latency_us FROM measurements ORDER BY id').pluck().all()).toEqual([12500, 45000, 80000, 91300, 3100]);
    expect(db.prepare('SELECT DISTINCT site FROM targets').pluck().all()).toEqual(['hq']);

    for (const m of [...SAMPLE_MIGRATIONS].reverse().slice(0, 2)) db.exec(m.down);
    expect(db.prepare('SELECT id, target_id, taken_at, latency_ms FROM measurements ORDER BY id').all()).toEqual(v1);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'alarms'").all()).toEqual([]);
    db.exec(SAMPLE_MIGRATIONS[0]!.down);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all()).toEqual([]);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});
