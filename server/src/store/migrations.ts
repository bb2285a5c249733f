/**
 * The schema, as an ordered list of migrations applied once each (recorded in
 * schema_migrations). The SQL stays portable between SQLite and PostgreSQL: TEXT timestamps
 * (ISO-8601 UTC), TEXT JSON, INTEGER booleans, `ON CONFLICT` upserts. The one dialect-specific
 * construct is `INTEGER PRIMARY KEY` for the audit id (PostgreSQL: `BIGINT GENERATED ALWAYS AS
 * IDENTITY`); a PostgreSQL store keeps its own copy of this list.
 *
 * Other modules add their tables by appending a migration here (the rollouts module: `0002-…`).
 * A migration never changes once released.
 */
export interface Migration {
  readonly id: string;
  readonly statements: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    id: '0001-core',
    statements: [
      `CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      )`,
      `CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT,
        probe_id TEXT,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
      )`,
      `CREATE INDEX tokens_probe ON tokens (probe_id)`,
      `CREATE TABLE probes (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        enrolled_at TEXT NOT NULL,
        http_base TEXT,
        mqtt_hash TEXT,
        online INTEGER NOT NULL,
        online_conn TEXT,
        last_seen TEXT,
        state TEXT,
        state_at TEXT,
        version TEXT,
        health TEXT,
        last_event_seq INTEGER,
        committed_deployment TEXT,
        committed_version TEXT,
        committed_at TEXT
      )`,
      `CREATE INDEX probes_channel ON probes (channel)`,
      `CREATE TABLE probe_groups (
        probe_id TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (probe_id, name)
      )`,
      `CREATE INDEX probe_groups_name ON probe_groups (name)`,
      `CREATE TABLE probe_tags (
        probe_id TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (probe_id, name)
      )`,
      `CREATE INDEX probe_tags_name ON probe_tags (name)`,
      `CREATE TABLE events (
        probe_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        deployment_id TEXT,
        command_id TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (probe_id, event_id)
      )`,
      `CREATE INDEX events_probe_seq ON events (probe_id, seq)`,
      `CREATE TABLE deployments (
        probe_id TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        command_id TEXT,
        pack_sha256 TEXT,
        version TEXT,
        state TEXT,
        outcome TEXT,
        error_code TEXT,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (probe_id, deployment_id)
      )`,
      `CREATE TABLE packs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        product TEXT NOT NULL,
        version TEXT NOT NULL,
        summary TEXT NOT NULL,
        manifest TEXT NOT NULL,
        release_notes TEXT,
        uploaded_at TEXT NOT NULL,
        uploaded_by TEXT NOT NULL
      )`,
      `CREATE TABLE pack_pins (
        sha256 TEXT NOT NULL,
        holder TEXT NOT NULL,
        pinned_at TEXT NOT NULL,
        PRIMARY KEY (sha256, holder)
      )`,
      `CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        probe_id TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        rollout_id TEXT,
        pack_sha256 TEXT,
        status TEXT NOT NULL,
        error_code TEXT,
        deployment_id TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        polled_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        stuck_reported_at TEXT
      )`,
      `CREATE INDEX commands_probe ON commands (probe_id, status)`,
      `CREATE INDEX commands_rollout ON commands (rollout_id)`,
      `CREATE INDEX commands_pack ON commands (pack_sha256)`,
      `CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        status INTEGER NOT NULL,
        detail TEXT
      )`,
      `CREATE INDEX audit_actor ON audit (actor)`,
    ],
  },
  // The rollouts module (server/src/rollouts/, repository sqlite-rollouts.ts).
  {
    id: '0002-rollouts',
    statements: [
      `CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        name TEXT,
        pack_sha256 TEXT NOT NULL,
        pack_version TEXT NOT NULL,
        pack_product TEXT NOT NULL,
        environment TEXT,
        target TEXT NOT NULL,
        strategy TEXT NOT NULL,
        windows TEXT NOT NULL,
        state TEXT NOT NULL,
        wave INTEGER NOT NULL,
        wave_count INTEGER NOT NULL,
        has_canary INTEGER NOT NULL,
        wait_until TEXT,
        paused_reason TEXT,
        created_by TEXT NOT NULL,
        created_by_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT
      )`,
      `CREATE INDEX rollouts_state ON rollouts (state)`,
      `CREATE INDEX rollouts_pack ON rollouts (pack_sha256, environment)`,
      `CREATE TABLE rollout_targets (
        rollout_id TEXT NOT NULL,
        probe_id TEXT NOT NULL,
        wave INTEGER NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        command_id TEXT,
        error_code TEXT,
        deployment_id TEXT,
        skip_reason TEXT,
        acknowledged INTEGER NOT NULL,
        sent_at TEXT,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (rollout_id, probe_id)
      )`,
      `CREATE INDEX rollout_targets_wave ON rollout_targets (rollout_id, wave, state)`,
      `CREATE UNIQUE INDEX rollout_targets_command ON rollout_targets (command_id)`,
      `CREATE TABLE rollout_history (
        id INTEGER PRIMARY KEY,
        rollout_id TEXT NOT NULL,
        at TEXT NOT NULL,
        from_state TEXT NOT NULL,
        event TEXT NOT NULL,
        to_state TEXT NOT NULL,
        wave INTEGER NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT
      )`,
      `CREATE INDEX rollout_history_rollout ON rollout_history (rollout_id)`,
      `CREATE TABLE rollout_approvals (
        rollout_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        wave INTEGER,
        environment TEXT,
        pack_sha256 TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approved_by_name TEXT NOT NULL,
        approved_at TEXT NOT NULL
      )`,
      `CREATE INDEX rollout_approvals_rollout ON rollout_approvals (rollout_id)`,
      `CREATE INDEX rollout_approvals_promotion ON rollout_approvals (pack_sha256, environment, kind)`,
    ],
  },
  // The engine takes pending targets in wave and position order, a chunk at a time: without the
  // order in the index each chunk sorted every pending target of the rollout.
  {
    id: '0003-rollout-targets-order',
    statements: [`DROP INDEX IF EXISTS rollout_targets_wave`, `CREATE INDEX rollout_targets_state ON rollout_targets (rollout_id, state, wave, position)`],
  },
  // Retention (retention.ts) deletes by age: without these, each pass read whole tables.
  {
    id: '0004-retention-indexes',
    statements: [
      `CREATE INDEX events_received ON events (received_at)`,
      `CREATE INDEX audit_at ON audit (at)`,
      `CREATE INDEX commands_finished ON commands (finished_at)`,
      `CREATE INDEX deployments_finished ON deployments (finished_at)`,
    ],
  },
  {
    // Issue 24: a rollout's limits on its downloads (bandwidth cap, window), JSON or NULL.
    id: '0005-rollout-download-limits',
    statements: [`ALTER TABLE rollouts ADD COLUMN download TEXT`],
  },
  {
    // Issue 22: dashboard sessions. A staff token is exchanged for a session cookie; only the
    // cookie's SHA-256 is kept, with the token it stands for (revoking the token ends it).
    id: '0006-sessions',
    statements: [
      `CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        token_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
      )`,
      `CREATE INDEX sessions_token ON sessions (token_id)`,
      `CREATE INDEX sessions_expires ON sessions (expires_at)`,
    ],
  },
  {
    // Issue 21: the agent update a rollout sends first to probes whose agent is too old for its
    // pack (JSON {packSha256, version, minAgentVersion}, or NULL).
    id: '0007-rollout-agent-first',
    statements: [`ALTER TABLE rollouts ADD COLUMN agent_first TEXT`],
  },
]);
