import type { ProbeEvent, ProbeState } from '../../../base/src/protocol/messages.js';
import { parseJson, placeholders, type SqliteDb } from './sqlite-db.js';
import type { SqliteTokens } from './sqlite-tokens.js';
import type {
  Channel,
  DeploymentRecord,
  NewToken,
  PlanningProbe,
  ProbePatch,
  ProbeProblem,
  ProbeQuery,
  ProbeRecord,
  ProbeRepository,
  ProbeSort,
  ProbeTarget,
  StoredEvent,
} from './types.js';
import { PROBE_PROBLEMS } from './types.js';

interface Row {
  id: string;
  channel: Channel;
  enrolled_at: string;
  http_base: string | null;
  online: number;
  last_seen: string | null;
  state: string | null;
  state_at: string | null;
  last_event_seq: number | null;
  committed_deployment: string | null;
  committed_version: string | null;
  committed_at: string | null;
}

const COLUMNS =
  'p.id, p.channel, p.enrolled_at, p.http_base, p.online, p.last_seen, p.state, p.state_at, p.last_event_seq, p.committed_deployment, p.committed_version, p.committed_at';

/** Chunk size for IN lists, well under SQLite's and PostgreSQL's parameter limits. */
const IN_CHUNK = 500;

/** The probe inventory: enrollment, attributes (channel, groups, tags), last state, history reads. */
export class SqliteProbes implements ProbeRepository {
  constructor(
    private readonly sql: SqliteDb,
    private readonly tokens: SqliteTokens,
  ) {
    // Versions sort as versions (1.10.0 after 1.9.0), not as text: a key of zero-padded numbers.
    sql.db.function('sonde_version_key', { deterministic: true }, (v: unknown) => (typeof v === 'string' ? versionKey(v) : null));
  }

  async enroll(id: string, d: { httpBase: string; mqttPasswordHash: string; token: NewToken }): Promise<{ created: boolean }> {
    const at = new Date().toISOString();
    return this.sql.tx(() => {
      const existing = this.sql.get<{ id: string }>('SELECT id FROM probes WHERE id = ?', id);
      if (existing) {
        this.sql.run('UPDATE probes SET http_base = ?, mqtt_hash = ? WHERE id = ?', d.httpBase, d.mqttPasswordHash, id);
      } else {
        this.sql.run(
          `INSERT INTO probes (id, channel, enrolled_at, http_base, mqtt_hash, online) VALUES (?, 'stable', ?, ?, ?, 0)`,
          id,
          at,
          d.httpBase,
          d.mqttPasswordHash,
        );
      }
      this.tokens.revokeProbeSync(id, at);
      this.tokens.createSync(d.token, at);
      return { created: !existing };
    });
  }

  async get(id: string): Promise<ProbeRecord | null> {
    const r = this.sql.get<Row>(`SELECT ${COLUMNS} FROM probes p WHERE p.id = ?`, id);
    return r ? this.withSets([r])[0]! : null;
  }

  async list(target: ProbeQuery, page: { limit: number; offset: number }): Promise<{ probes: ProbeRecord[]; total: number }> {
    if (target.probeIds) {
      const ids = await this.match(target);
      const slice = ids.slice(page.offset, page.offset + page.limit);
      const rows: Row[] = [];
      for (let i = 0; i < slice.length; i += IN_CHUNK) {
        const chunk = slice.slice(i, i + IN_CHUNK);
        rows.push(...this.sql.all<Row>(`SELECT ${COLUMNS} FROM probes p WHERE p.id IN (${placeholders(chunk.length)}) ORDER BY p.id`, ...chunk));
      }
      return { probes: this.withSets(rows), total: ids.length };
    }
    const { where, params } = whereOf(target);
    const total = this.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM probes p ${where}`, ...params)!.n;
    const rows = this.sql.all<Row>(`SELECT ${COLUMNS} FROM probes p ${where} ORDER BY ${orderOf(target.sort ?? 'id', target.order ?? 'asc')} LIMIT ? OFFSET ?`, ...params, page.limit, page.offset);
    return { probes: this.withSets(rows), total };
  }

  async problems(limit: number): Promise<{ counts: Record<ProbeProblem, number>; probes: { probe: ProbeRecord; problems: ProbeProblem[] }[] }> {
    const flags = `p.online = 0 AS offline, p.health = 'down' AS down, p.health = 'degraded' AS degraded,
      json_extract(p.state, '$.lastDeployment.outcome') IN ('failed', 'rolled-back') AS failed,
      EXISTS (SELECT 1 FROM commands c WHERE c.probe_id = p.id AND c.status IN ('accepted', 'running') AND c.stuck_reported_at IS NOT NULL) AS stuck`;
    const c = this.sql.get<Record<'offline' | 'down' | 'degraded' | 'failed' | 'stuck', number | null>>(
      `SELECT SUM(offline) AS offline, SUM(down) AS down, SUM(degraded) AS degraded, SUM(failed) AS failed, SUM(stuck) AS stuck FROM (SELECT ${flags} FROM probes p)`,
    )!;
    const counts: Record<ProbeProblem, number> = { offline: c.offline ?? 0, down: c.down ?? 0, degraded: c.degraded ?? 0, 'failed-deployment': c.failed ?? 0, stuck: c.stuck ?? 0 };
    type Flagged = Row & { offline: number; down: number | null; degraded: number | null; failed: number | null; stuck: number };
    const rows = this.sql.all<Flagged>(
      `SELECT * FROM (SELECT ${COLUMNS}, ${flags} FROM probes p)
       WHERE offline OR down OR degraded OR failed OR stuck
       ORDER BY offline DESC, down DESC, degraded DESC, failed DESC, stuck DESC, last_seen DESC NULLS LAST, id LIMIT ?`,
      limit,
    );
    const records = this.withSets(rows);
    return {
      counts,
      probes: rows.map((r, i) => ({
        probe: records[i]!,
        problems: PROBE_PROBLEMS.filter((k) => (k === 'failed-deployment' ? r.failed : r[k]) === 1),
      })),
    };
  }

  async updateMany(ids: readonly string[], patch: ProbePatch): Promise<string[]> {
    return this.sql.tx(() => {
      const found: string[] = [];
      for (const id of ids) if (this.applyPatch(id, patch)) found.push(id);
      return found;
    });
  }

  async deployment(id: string, deploymentId: string): Promise<{ deployment: DeploymentRecord; events: StoredEvent[] } | null> {
    const d = this.sql.get<DeploymentRow>('SELECT * FROM deployments WHERE probe_id = ? AND deployment_id = ?', id, deploymentId);
    if (!d) return null;
    const events = this.sql
      .all<{ body: string; received_at: string }>('SELECT body, received_at FROM events WHERE probe_id = ? AND deployment_id = ? ORDER BY seq, received_at', id, deploymentId)
      .map((r) => ({ probeId: id, receivedAt: r.received_at, event: JSON.parse(r.body) as ProbeEvent }));
    return { deployment: toDeployment(d), events };
  }

  async match(target: ProbeTarget): Promise<string[]> {
    const { where, params } = whereOf(target);
    const ids = this.sql.all<{ id: string }>(`SELECT p.id FROM probes p ${where} ORDER BY p.id`, ...params).map((r) => r.id);
    if (!target.probeIds) return ids;
    const wanted = new Set(target.probeIds);
    return ids.filter((id) => wanted.has(id));
  }

  async httpBases(ids: readonly string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (let i = 0; i < ids.length; i += IN_CHUNK) {
      const chunk = ids.slice(i, i + IN_CHUNK);
      for (const r of this.sql.all<{ id: string; http_base: string | null }>(`SELECT id, http_base FROM probes WHERE id IN (${placeholders(chunk.length)})`, ...chunk)) {
        out.set(r.id, r.http_base);
      }
    }
    return out;
  }

  async planning(ids: readonly string[], version: string): Promise<PlanningProbe[]> {
    const out: PlanningProbe[] = [];
    for (let i = 0; i < ids.length; i += IN_CHUNK) {
      const chunk = ids.slice(i, i + IN_CHUNK);
      // The product from the stored state, read in SQL and only where the version matches
      // (json_extract; PostgreSQL: state::jsonb ->> 'product'): parsing every state costs more
      // than the rest of the plan.
      const rows = this.sql.all<{ id: string; online: number; version: string | null; product: string | null; reported: number }>(
        `SELECT id, online, version, CASE WHEN version = ? THEN json_extract(state, '$.product') END AS product, state IS NOT NULL AS reported
         FROM probes WHERE id IN (${placeholders(chunk.length)}) ORDER BY id`,
        version,
        ...chunk,
      );
      for (const r of rows) out.push({ id: r.id, online: r.online === 1, state: r.reported === 1 && r.version !== null ? { version: r.version, product: r.product } : null });
    }
    return out;
  }

  async update(id: string, patch: ProbePatch): Promise<ProbeRecord | null> {
    const found = this.sql.tx(() => this.applyPatch(id, patch));
    return found ? this.get(id) : null;
  }

  /** Inside a transaction: false when there is no such probe. */
  private applyPatch(id: string, patch: ProbePatch): boolean {
    if (!this.sql.get('SELECT id FROM probes WHERE id = ?', id)) return false;
    if (patch.channel !== undefined) this.sql.run('UPDATE probes SET channel = ? WHERE id = ?', patch.channel, id);
    for (const g of patch.addGroups ?? []) this.sql.run('INSERT INTO probe_groups (probe_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING', id, g);
    for (const g of patch.removeGroups ?? []) this.sql.run('DELETE FROM probe_groups WHERE probe_id = ? AND name = ?', id, g);
    for (const t of patch.addTags ?? []) this.sql.run('INSERT INTO probe_tags (probe_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING', id, t);
    for (const t of patch.removeTags ?? []) this.sql.run('DELETE FROM probe_tags WHERE probe_id = ? AND name = ?', id, t);
    return true;
  }

  async mqttPasswordHashes(): Promise<{ probeId: string; hash: string }[]> {
    return this.sql
      .all<{ id: string; mqtt_hash: string }>('SELECT id, mqtt_hash FROM probes WHERE mqtt_hash IS NOT NULL ORDER BY id')
      .map((r) => ({ probeId: r.id, hash: r.mqtt_hash }));
  }

  async counts(): Promise<{ total: number; online: number }> {
    const r = this.sql.get<{ total: number; online: number | null }>('SELECT COUNT(*) AS total, SUM(online) AS online FROM probes')!;
    return { total: r.total, online: r.online ?? 0 };
  }

  async countsBy(column: 'version' | 'health' | 'channel'): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    // `column` is one of three literals (the type says so), never caller text.
    const col = column === 'version' ? 'version' : column === 'health' ? 'health' : 'channel';
    const rows = this.sql.all<{ v: string | null; n: number }>(`SELECT ${col} AS v, COUNT(*) AS n FROM probes GROUP BY v`);
    for (const r of rows) out[r.v ?? 'none'] = r.n;
    return out;
  }

  async markAllOffline(): Promise<void> {
    this.sql.run('UPDATE probes SET online = 0 WHERE online = 1');
  }

  async touch(seen: ReadonlyMap<string, string>): Promise<void> {
    if (seen.size === 0) return;
    this.sql.tx(() => {
      for (const [id, at] of seen) this.sql.run('UPDATE probes SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)', at, id, at);
    });
  }

  async events(id: string, opts: { limit: number; type?: string | undefined }): Promise<StoredEvent[]> {
    // The newest `limit`, returned oldest first: by seq, then by arrival for equal seqs (a last
    // will carries the seq of the event before it).
    const rows =
      opts.type === undefined
        ? this.sql.all<{ body: string; received_at: string }>(
            'SELECT body, received_at FROM events WHERE probe_id = ? ORDER BY seq DESC, received_at DESC LIMIT ?',
            id,
            opts.limit,
          )
        : this.sql.all<{ body: string; received_at: string }>(
            'SELECT body, received_at FROM events WHERE probe_id = ? AND type = ? ORDER BY seq DESC, received_at DESC LIMIT ?',
            id,
            opts.type,
            opts.limit,
          );
    return rows.reverse().map((r) => ({ probeId: id, receivedAt: r.received_at, event: JSON.parse(r.body) as ProbeEvent }));
  }

  async deployments(id: string, limit: number): Promise<DeploymentRecord[]> {
    return this.sql
      .all<DeploymentRow>('SELECT * FROM deployments WHERE probe_id = ? ORDER BY started_at DESC, deployment_id DESC LIMIT ?', id, limit)
      .map(toDeployment);
  }

  private withSets(rows: Row[]): ProbeRecord[] {
    if (rows.length === 0) return [];
    const groups = new Map<string, string[]>();
    const tags = new Map<string, string[]>();
    const ids = rows.map((r) => r.id);
    for (let i = 0; i < ids.length; i += IN_CHUNK) {
      const chunk = ids.slice(i, i + IN_CHUNK);
      const list = placeholders(chunk.length);
      for (const g of this.sql.all<{ probe_id: string; name: string }>(`SELECT probe_id, name FROM probe_groups WHERE probe_id IN (${list}) ORDER BY name`, ...chunk)) {
        groups.set(g.probe_id, [...(groups.get(g.probe_id) ?? []), g.name]);
      }
      for (const t of this.sql.all<{ probe_id: string; name: string }>(`SELECT probe_id, name FROM probe_tags WHERE probe_id IN (${list}) ORDER BY name`, ...chunk)) {
        tags.set(t.probe_id, [...(tags.get(t.probe_id) ?? []), t.name]);
      }
    }
    return rows.map((r) => ({
      id: r.id,
      channel: r.channel,
      groups: groups.get(r.id) ?? [],
      tags: tags.get(r.id) ?? [],
      enrolledAt: r.enrolled_at,
      httpBase: r.http_base,
      online: r.online === 1,
      lastSeen: r.last_seen,
      state: parseJson<ProbeState>(r.state),
      stateAt: r.state_at,
      lastEventSeq: r.last_event_seq,
      lastCommitted:
        r.committed_deployment === null ? null : { deploymentId: r.committed_deployment, version: r.committed_version, at: r.committed_at ?? '' },
    }));
  }
}

const OUTCOME = `json_extract(p.state, '$.lastDeployment.outcome')`;

/** ORDER BY for a listing: the column, then the id (a stable page order); missing values last. */
function orderOf(sort: ProbeSort, order: 'asc' | 'desc'): string {
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  const column: Record<ProbeSort, string> = {
    id: 'p.id',
    version: 'sonde_version_key(p.version)',
    health: 'p.health',
    online: 'p.online',
    lastSeen: 'p.last_seen',
    channel: 'p.channel',
    outcome: OUTCOME,
    stateAt: 'p.state_at',
  };
  return sort === 'id' ? `p.id ${dir}` : `${column[sort]} ${dir} NULLS LAST, p.id ${dir}`;
}

/** 1.10.0 -> 000001.000010.000000~ (a release after its pre-releases: "~" sorts after "-"). */
export function versionKey(v: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-([^+]*))?/.exec(v);
  if (!m) return `~${v}`;
  const pad = (n: string) => n.padStart(6, '0');
  return `${pad(m[1]!)}.${pad(m[2]!)}.${pad(m[3]!)}${m[4] === undefined ? '~' : `-${m[4]}`}`;
}

const likeEscape = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

function whereOf(t: ProbeQuery): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  if (t.channel !== undefined) {
    clauses.push('p.channel = ?');
    params.push(t.channel);
  }
  if (t.group !== undefined) {
    clauses.push('EXISTS (SELECT 1 FROM probe_groups g WHERE g.probe_id = p.id AND g.name = ?)');
    params.push(t.group);
  }
  if (t.tag !== undefined) {
    clauses.push('EXISTS (SELECT 1 FROM probe_tags t WHERE t.probe_id = p.id AND t.name = ?)');
    params.push(t.tag);
  }
  if (t.online !== undefined) {
    clauses.push('p.online = ?');
    params.push(t.online ? 1 : 0);
  }
  if (t.agentBelow !== undefined) {
    clauses.push(`sonde_version_key(json_extract(p.state, '$.agentVersion')) < sonde_version_key(?)`);
    params.push(t.agentBelow);
  }
  if (t.text !== undefined && t.text !== '') {
    const like = likeEscape(t.text);
    clauses.push(
      `(p.id LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM probe_groups g WHERE g.probe_id = p.id AND g.name LIKE ? ESCAPE '\\') OR EXISTS (SELECT 1 FROM probe_tags t WHERE t.probe_id = p.id AND t.name LIKE ? ESCAPE '\\'))`,
    );
    params.push(like, like, like);
  }
  // `none`: the probe has reported no such value (no state yet, no deployment yet).
  for (const [expr, value] of [['p.version', t.version], ['p.health', t.health], [OUTCOME, t.outcome]] as const) {
    if (value === undefined) continue;
    clauses.push(value === 'none' ? `${expr} IS NULL` : `${expr} = ?`);
    if (value !== 'none') params.push(value);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
}

export interface DeploymentRow {
  probe_id: string;
  deployment_id: string;
  command_id: string | null;
  pack_sha256: string | null;
  version: string | null;
  state: string | null;
  outcome: DeploymentRecord['outcome'];
  error_code: string | null;
  started_at: string;
  updated_at: string;
  finished_at: string | null;
}

export function toDeployment(r: DeploymentRow): DeploymentRecord {
  return {
    probeId: r.probe_id,
    deploymentId: r.deployment_id,
    commandId: r.command_id,
    packSha256: r.pack_sha256,
    version: r.version,
    state: r.state,
    outcome: r.outcome,
    errorCode: r.error_code,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}
