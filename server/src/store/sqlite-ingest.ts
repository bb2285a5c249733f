import type { ProbeEvent } from '../../../base/src/protocol/messages.js';
import { commandUpdateFor, connectionOf, mayMove, offlineIsStale } from '../inventory/rules.js';
import type { SqliteDb } from './sqlite-db.js';
import { TERMINAL_STATUSES, type CommandChange, type CommandStatus, type IngestBatch, type IngestResult, type StoredEvent } from './types.js';

interface ProbeRow {
  online: number;
  online_conn: string | null;
  last_seen: string | null;
  state_at: string | null;
  last_event_seq: number | null;
}

/** The probe columns the ingest writes back, in the order its UPDATEs name them. */
const PROBE_COLUMNS = ['last_seen', 'last_event_seq', 'online', 'online_conn', 'state', 'state_at', 'version', 'health'] as const;
type ProbeColumn = (typeof PROBE_COLUMNS)[number];

/**
 * One batch of MQTT messages (what arrived since the last group commit: ingest-queue.ts) applied
 * in one transaction: the last state of each probe, its events deduplicated by id, the commands
 * and deployments those events move, and who is online.
 */
export function applyIngest(sql: SqliteDb, batch: IngestBatch): IngestResult {
  return sql.tx(() => {
    const applied: StoredEvent[] = [];
    const changes: CommandChange[] = [];
    const connected = new Set<string>();
    const wentOffline = new Set<string>();
    let duplicates = 0;
    let unknown = 0;
    const probes = new Map<string, ProbeRow | null>();
    const probe = (id: string): ProbeRow | null => {
      if (!probes.has(id)) {
        probes.set(id, sql.get<ProbeRow>('SELECT online, online_conn, last_seen, state_at, last_event_seq FROM probes WHERE id = ?', id) ?? null);
      }
      return probes.get(id)!;
    };
    // What the batch changes in each probe's row is written once, at the end of the transaction:
    // an acknowledgement or a state then costs one UPDATE of its probe instead of two or three.
    const dirty = new Map<string, Map<ProbeColumn, unknown>>();
    const set = (id: string, column: ProbeColumn, value: unknown): void => {
      let columns = dirty.get(id);
      if (!columns) dirty.set(id, (columns = new Map()));
      columns.set(column, value);
    };
    const seen = (id: string, p: ProbeRow, at: string): void => {
      if (p.last_seen === null || p.last_seen < at) {
        p.last_seen = at;
        set(id, 'last_seen', at);
      }
    };
    const setOnline = (id: string, p: ProbeRow, online: boolean, conn: string | null): void => {
      p.online = online ? 1 : 0;
      if (online) p.online_conn = conn;
      set(id, 'online', p.online);
      set(id, 'online_conn', p.online_conn);
      if (online) {
        connected.add(id);
        wentOffline.delete(id);
      } else {
        wentOffline.add(id);
        connected.delete(id);
      }
    };

    const stated = new Set<string>();
    for (const s of batch.states) {
      const p = probe(s.probeId);
      if (!p) {
        unknown++;
        continue;
      }
      seen(s.probeId, p, s.receivedAt);
      if (p.online === 0) setOnline(s.probeId, p, true, p.online_conn);
      // States are not queued by the agent, but one can overtake another across a reconnect.
      if (p.state_at !== null && p.state_at > s.state.at) continue;
      p.state_at = s.state.at;
      stated.add(s.probeId);
      set(s.probeId, 'state', JSON.stringify(s.state));
      set(s.probeId, 'state_at', s.state.at);
      set(s.probeId, 'version', s.state.version);
      set(s.probeId, 'health', s.state.health);
    }

    for (const stored of batch.events) {
      const { probeId, event: e, receivedAt } = stored;
      const p = probe(probeId);
      if (!p) {
        unknown++;
        continue;
      }
      const inserted = sql.run(
        `INSERT INTO events (probe_id, event_id, seq, type, at, received_at, deployment_id, command_id, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (probe_id, event_id) DO NOTHING`,
        probeId,
        e.id,
        e.seq,
        e.type,
        e.at,
        receivedAt,
        e.deploymentId ?? null,
        e.commandId ?? null,
        JSON.stringify(e),
      );
      if (inserted.changes === 0) {
        // The outbox sends an event again when its PUBACK was lost: acted on once only.
        duplicates++;
        continue;
      }
      applied.push(stored);
      seen(probeId, p, receivedAt);
      if (p.last_event_seq === null || e.seq > p.last_event_seq) {
        p.last_event_seq = e.seq;
        set(probeId, 'last_event_seq', e.seq);
      }
      if (e.type === 'online') setOnline(probeId, p, true, connectionOf(e.id, 'online-'));
      else if (e.type === 'offline' && !offlineIsStale(e, p.online_conn)) setOnline(probeId, p, false, null);
      else if (p.online === 0 && e.type !== 'offline') setOnline(probeId, p, true, p.online_conn);

      const change = applyToCommand(sql, probeId, e, receivedAt);
      if (change) changes.push(change);
      applyToDeployment(sql, probeId, e);
    }
    for (const [id, columns] of dirty) {
      // In one fixed order, so the prepared statements stay few.
      const names = PROBE_COLUMNS.filter((c) => columns.has(c));
      sql.run(`UPDATE probes SET ${names.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`, ...names.map((c) => columns.get(c)), id);
    }
    return { applied, duplicates, unknown, commandChanges: changes, connected: [...connected], wentOffline: [...wentOffline], stated: [...stated] };
  });
}

interface CommandRow {
  status: CommandStatus;
  rollout_id: string | null;
  deployment_id: string | null;
  error_code: string | null;
}

/** Command times are the server's (receivedAt): the stuck check compares them with its own clock. */
function applyToCommand(sql: SqliteDb, probeId: string, e: ProbeEvent, receivedAt: string): CommandChange | null {
  if (e.commandId === undefined) return null;
  const update = commandUpdateFor(e);
  // A command id is only honoured for the probe it was sent to.
  const c = sql.get<CommandRow>('SELECT status, rollout_id, deployment_id, error_code FROM commands WHERE command_id = ? AND probe_id = ?', e.commandId, probeId);
  if (!c || !update) return null;
  const deploymentId = e.deploymentId ?? c.deployment_id;
  if (!mayMove(c.status, update.status, e)) return null;
  const final = TERMINAL_STATUSES.has(update.status);
  sql.run(
    `UPDATE commands SET status = ?, error_code = ?, deployment_id = ?, updated_at = ?, finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END WHERE command_id = ?`,
    update.status,
    update.errorCode,
    deploymentId,
    receivedAt,
    final ? 1 : 0,
    receivedAt,
    e.commandId,
  );
  return { commandId: e.commandId, probeId, rolloutId: c.rollout_id, status: update.status, errorCode: update.errorCode, deploymentId };
}

function applyToDeployment(sql: SqliteDb, probeId: string, e: ProbeEvent): void {
  if (e.deploymentId === undefined || (e.type !== 'install-state' && e.type !== 'install-outcome')) return;
  sql.run(
    `INSERT INTO deployments (probe_id, deployment_id, started_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (probe_id, deployment_id) DO NOTHING`,
    probeId,
    e.deploymentId,
    e.at,
    e.at,
  );
  if (e.type === 'install-state') {
    sql.run('UPDATE deployments SET state = ?, updated_at = ? WHERE probe_id = ? AND deployment_id = ? AND outcome IS NULL', e.state ?? null, e.at, probeId, e.deploymentId);
    return;
  }
  const pack =
    e.commandId === undefined
      ? null
      : (sql.get<{ pack_sha256: string | null }>('SELECT pack_sha256 FROM commands WHERE command_id = ? AND probe_id = ?', e.commandId, probeId)?.pack_sha256 ?? null);
  sql.run(
    `UPDATE deployments SET outcome = ?, version = COALESCE(?, version), error_code = ?, command_id = COALESCE(?, command_id),
       pack_sha256 = COALESCE(?, pack_sha256), updated_at = ?, finished_at = ? WHERE probe_id = ? AND deployment_id = ?`,
    e.outcome ?? 'failed',
    e.version ?? null,
    e.code ?? null,
    e.commandId ?? null,
    pack,
    e.at,
    e.at,
    probeId,
    e.deploymentId,
  );
  if (e.outcome === 'committed') {
    sql.run(
      `UPDATE probes SET committed_deployment = ?, committed_version = ?, committed_at = ? WHERE id = ? AND (committed_at IS NULL OR committed_at <= ?)`,
      e.deploymentId,
      e.version ?? null,
      e.at,
      probeId,
      e.at,
    );
  }
}
