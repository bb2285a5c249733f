/**
 * The sample app's database migrations (docs/probe-layout.md, payload type `db`). The engine runs
 * each `up` in a transaction that ends with `PRAGMA user_version = NNNN`, so the SQL here sets no
 * version and opens no transaction itself. Every step changes rows as well as the schema, so that
 * a migration applied wrongly, twice or not at all is visible in the data, and every `down`
 * undoes its `up`.
 */
export interface Migration {
  /** `NNNN-name`: the files are `migrations/<name>.up.sql` and `.down.sql`. */
  readonly name: string;
  /** The database version the migration brings the database to. */
  readonly version: number;
  readonly up: string;
  readonly down: string;
}

/** Schema v1 (1.0.0): targets and their latency measurements, with a few seeded targets. */
export const MIGRATION_0001: Migration = {
  name: '0001-init',
  version: 1,
  up: `CREATE TABLE targets (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  address TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE measurements (
  id INTEGER PRIMARY KEY,
  target_id INTEGER NOT NULL REFERENCES targets(id),
  taken_at TEXT NOT NULL,
  latency_ms REAL NOT NULL
);
CREATE INDEX measurements_by_target ON measurements(target_id, id);
INSERT INTO targets (name, address) VALUES
  ('core-router', '10.0.0.1'),
  ('edge-switch', '10.0.0.2'),
  ('dns-primary', '10.0.0.53');
`,
  down: `DROP TABLE measurements;
DROP TABLE targets;
`,
};

/**
 * Schema v2 (1.1.0): a severity per measurement, derived for the existing rows from their latency
 * with the app's default thresholds (40 and 80 ms), and an alarms table holding one alarm per
 * measurement that is not ok, back-filled from those rows.
 */
export const MIGRATION_0002: Migration = {
  name: '0002-severity-alarms',
  version: 2,
  up: `ALTER TABLE measurements ADD COLUMN severity TEXT NOT NULL DEFAULT 'ok';
UPDATE measurements SET severity = CASE
  WHEN latency_ms >= 80 THEN 'critical'
  WHEN latency_ms >= 40 THEN 'warning'
  ELSE 'ok' END;
CREATE TABLE alarms (
  id INTEGER PRIMARY KEY,
  target_id INTEGER NOT NULL REFERENCES targets(id),
  raised_at TEXT NOT NULL,
  severity TEXT NOT NULL,
  measurement_id INTEGER NOT NULL
);
INSERT INTO alarms (target_id, raised_at, severity, measurement_id)
  SELECT target_id, taken_at, severity, id FROM measurements WHERE severity <> 'ok' ORDER BY id;
`,
  down: `DROP TABLE alarms;
ALTER TABLE measurements DROP COLUMN severity;
`,
};

/**
 * Schema v3 (1.2.0, the faulty releases): latency is stored as integer microseconds instead of
 * fractional milliseconds, every row converted, and targets gain a site.
 */
export const MIGRATION_0003: Migration = {
  name: '0003-latency-us-sites',
  version: 3,
  up: `ALTER TABLE measurements ADD COLUMN latency_us INTEGER NOT NULL DEFAULT 0;
UPDATE measurements SET latency_us = CAST(round(latency_ms * 1000) AS INTEGER);
ALTER TABLE measurements DROP COLUMN latency_ms;
ALTER TABLE targets ADD COLUMN site TEXT NOT NULL DEFAULT 'default';
UPDATE targets SET site = 'hq' WHERE address LIKE '10.0.0.%';
`,
  down: `ALTER TABLE targets DROP COLUMN site;
ALTER TABLE measurements ADD COLUMN latency_ms REAL NOT NULL DEFAULT 0;
UPDATE measurements SET latency_ms = latency_us / 1000.0;
ALTER TABLE measurements DROP COLUMN latency_us;
`,
};

export const SAMPLE_MIGRATIONS: readonly Migration[] = Object.freeze([MIGRATION_0001, MIGRATION_0002, MIGRATION_0003]);
