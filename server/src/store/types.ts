import type { Command, ProbeEvent, ProbeState } from '../../../base/src/protocol/messages.js';
import type { Manifest } from '../../../pack/src/index.js';
import type { RolloutRepository } from '../rollouts/rollout-repository.js';
import type { PruneResult, RetentionPolicy } from './retention.js';

/**
 * The fleet server's repository interface (issue 5: "better-sqlite3 storage behind a small
 * repository interface; PostgreSQL will follow"). Every method is async so that a PostgreSQL
 * store can implement the same interface; route handlers and services see only this, never SQL.
 * Timestamps are ISO-8601 UTC strings, JSON columns are parsed here, booleans are booleans.
 */

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const CHANNELS = ['stable', 'old-stable', 'beta'] as const;
export type Channel = (typeof CHANNELS)[number];

// ---------------------------------------------------------------------------------------------
// Tokens

export type TokenKind = 'staff' | 'probe';

export interface TokenRecord {
  /** Public id (`tok_…`), what the audit log and the API name; never the secret. */
  readonly id: string;
  readonly kind: TokenKind;
  readonly name: string;
  /** Staff tokens only. */
  readonly role: Role | null;
  /** Probe tokens only. */
  readonly probeId: string | null;
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

export interface NewToken {
  readonly id: string;
  readonly kind: TokenKind;
  readonly name: string;
  readonly role: Role | null;
  readonly probeId: string | null;
  /** SHA-256 of the secret, hex. */
  readonly hash: string;
}

export interface TokenRepository {
  create(t: NewToken): Promise<TokenRecord>;
  /** The active (not revoked) token with this hash, and the hash as stored. */
  findActiveByHash(hash: string): Promise<{ token: TokenRecord; hash: string } | null>;
  list(kind?: TokenKind): Promise<TokenRecord[]>;
  get(id: string): Promise<TokenRecord | null>;
  revoke(id: string): Promise<boolean>;
}

// ---------------------------------------------------------------------------------------------
// Dashboard sessions

export interface SessionRecord {
  /** SHA-256 of the cookie's secret, hex. */
  readonly hash: string;
  /** The CSRF token every mutating call of this session must carry (X-CSRF-Token). */
  readonly csrf: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  /** The staff token the session stands for; a revoked token ends its sessions. */
  readonly token: TokenRecord;
}

export interface SessionRepository {
  create(s: { hash: string; tokenId: string; csrf: string; createdAt: string; expiresAt: string }): Promise<void>;
  /** The session with this hash while it has not expired and its token is not revoked. */
  find(hash: string, now: string): Promise<SessionRecord | null>;
  delete(hash: string): Promise<boolean>;
  /** Removes expired sessions and those of revoked tokens; returns how many. */
  prune(now: string): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Probes and their history

export interface ProbeRecord {
  readonly id: string;
  readonly channel: Channel;
  readonly groups: readonly string[];
  readonly tags: readonly string[];
  readonly enrolledAt: string;
  /** The server base URL the probe was enrolled with; install commands point it there. */
  readonly httpBase: string | null;
  readonly online: boolean;
  readonly lastSeen: string | null;
  /** The last state the probe published (the broker retains none: notes/fleet-facts.md). */
  readonly state: ProbeState | null;
  readonly stateAt: string | null;
  readonly lastEventSeq: number | null;
  /** The last deployment the server saw commit (from an install-outcome event, never from state). */
  readonly lastCommitted: { readonly deploymentId: string; readonly version: string | null; readonly at: string } | null;
}

/** Which probes a rollout (or a listing) addresses; present fields must all match. */
export interface ProbeTarget {
  readonly channel?: Channel | undefined;
  readonly group?: string | undefined;
  readonly tag?: string | undefined;
  readonly probeIds?: readonly string[] | undefined;
  readonly online?: boolean | undefined;
  /** Probes whose last state reports an agent older than this version (probes with no state are not). */
  readonly agentBelow?: string | undefined;
}

/** A listing's filters beyond a target's (the dashboard's probes page), and its order. */
export interface ProbeQuery extends ProbeTarget {
  /** Part of the id, a group or a tag, case-insensitive. */
  readonly text?: string | undefined;
  /** The version the last state reported; `none`: no state yet. */
  readonly version?: string | undefined;
  readonly health?: 'ok' | 'degraded' | 'down' | 'unknown' | 'none' | undefined;
  /** The outcome of the last deployment the probe reported; `none`: none yet. */
  readonly outcome?: 'committed' | 'rolled-back' | 'failed' | 'duplicate' | 'none' | undefined;
  readonly sort?: ProbeSort | undefined;
  readonly order?: 'asc' | 'desc' | undefined;
}

export const PROBE_SORTS = ['id', 'version', 'health', 'online', 'lastSeen', 'channel', 'outcome', 'stateAt'] as const;
export type ProbeSort = (typeof PROBE_SORTS)[number];

/** What is wrong with a probe, as the fleet overview ranks it (worst first). */
export const PROBE_PROBLEMS = ['offline', 'down', 'degraded', 'failed-deployment', 'stuck'] as const;
export type ProbeProblem = (typeof PROBE_PROBLEMS)[number];

export interface ProbePatch {
  readonly channel?: Channel | undefined;
  readonly addGroups?: readonly string[] | undefined;
  readonly removeGroups?: readonly string[] | undefined;
  readonly addTags?: readonly string[] | undefined;
  readonly removeTags?: readonly string[] | undefined;
}

export interface StoredEvent {
  readonly probeId: string;
  readonly receivedAt: string;
  readonly event: ProbeEvent;
}

export interface DeploymentRecord {
  readonly probeId: string;
  readonly deploymentId: string;
  readonly commandId: string | null;
  readonly packSha256: string | null;
  readonly version: string | null;
  /** The last install-state the probe reported (staged, switched, …). */
  readonly state: string | null;
  /** Set by the install-outcome event only. */
  readonly outcome: 'committed' | 'rolled-back' | 'failed' | 'duplicate' | null;
  readonly errorCode: string | null;
  readonly startedAt: string;
  readonly updatedAt: string;
  readonly finishedAt: string | null;
}

export interface ProbeRepository {
  /**
   * In one transaction: creates the probe or refreshes its enrollment details (groups, tags and
   * history stay), revokes its earlier tokens and stores the new one.
   */
  enroll(id: string, details: { httpBase: string; mqttPasswordHash: string; token: NewToken }): Promise<{ created: boolean }>;
  get(id: string): Promise<ProbeRecord | null>;
  list(query: ProbeQuery, page: { limit: number; offset: number }): Promise<{ probes: ProbeRecord[]; total: number }>;
  /** Probes with problems, worst first (offline, down, degraded, failed last deployment, stuck command), and how many have each. */
  problems(limit: number): Promise<{ counts: Record<ProbeProblem, number>; probes: { probe: ProbeRecord; problems: ProbeProblem[] }[] }>;
  /** The same patch to many probes in one transaction; returns the ids that exist. */
  updateMany(ids: readonly string[], patch: ProbePatch): Promise<string[]>;
  /** One deployment of a probe and every event stored for it, oldest first. */
  deployment(id: string, deploymentId: string): Promise<{ deployment: DeploymentRecord; events: StoredEvent[] } | null>;
  /** Ids of every probe matching the target, sorted: what a rollout addresses. */
  match(target: ProbeTarget): Promise<string[]>;
  /** The HTTP base each of these probes downloads from (null: the server's default); unknown ids are absent. What a fan-out needs of a probe, and nothing more. */
  httpBases(ids: readonly string[]): Promise<Map<string, string | null>>;
  /**
   * What planning a rollout of `version` needs of these probes, and nothing more: online, the
   * version each last reported, and its product where that version is `version` (the planner
   * compares the product only there; elsewhere it is null).
   */
  planning(ids: readonly string[], version: string): Promise<PlanningProbe[]>;
  update(id: string, patch: ProbePatch): Promise<ProbeRecord | null>;
  /** Mosquitto password-file lines: `probeId:$7$…`. */
  mqttPasswordHashes(): Promise<{ probeId: string; hash: string }[]>;
  counts(): Promise<{ total: number; online: number }>;
  /** Probes by the version or health their last state reported; `none` for probes with no state yet. */
  countsBy(column: 'version' | 'health' | 'channel'): Promise<Record<string, number>>;
  /** At the start of an embedded broker nobody is connected yet. */
  markAllOffline(): Promise<void>;
  /** Moves each probe's last seen forward to the time given (never back); unknown ids are ignored. */
  touch(seen: ReadonlyMap<string, string>): Promise<void>;
  events(id: string, opts: { limit: number; type?: string | undefined }): Promise<StoredEvent[]>;
  deployments(id: string, limit: number): Promise<DeploymentRecord[]>;
}

// ---------------------------------------------------------------------------------------------
// Packs

export interface PackSummary {
  readonly kind: Manifest['kind'];
  readonly product: string;
  readonly version: string;
  readonly compatible: readonly string[];
  readonly requires: string | null;
  readonly securityVersion: number;
  readonly createdAt: string;
  readonly encrypted: boolean;
  readonly payloads: readonly { readonly name: string; readonly type: string; readonly size: number }[];
  /** The signer certificate's subject, as the server's keyring verified it. */
  readonly signer: string;
}

export interface PackRecord {
  readonly sha256: string;
  readonly size: number;
  readonly summary: PackSummary;
  readonly releaseNotes: string | null;
  readonly manifest: Manifest;
  readonly uploadedAt: string;
  readonly uploadedBy: string;
}

export interface PackRepository {
  /** false when the pack was already there (the stored row is kept). */
  insert(p: PackRecord): Promise<boolean>;
  get(sha256: string): Promise<PackRecord | null>;
  list(): Promise<PackRecord[]>;
  delete(sha256: string): Promise<boolean>;
  /**
   * Why a pack must be kept, or [] when nothing holds it: a command not yet finished names it, or
   * a module pinned it (a rollout pins its pack until it ends).
   */
  holders(sha256: string): Promise<string[]>;
  /** Packs nothing holds, uploaded before `uploadedBefore`. */
  unreferenced(uploadedBefore: string): Promise<string[]>;
  pin(sha256: string, holder: string): Promise<void>;
  unpin(sha256: string, holder: string): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Commands

/**
 * pending: stored, not published yet (or the probe was offline). sent: published or handed out by
 * `/next`, not acknowledged. accepted / running: the probe said so (command-accepted, download-*).
 * Final: succeeded (install-outcome committed, and nothing else), failed, refused, cancelled, and
 * delivered for the commands a probe never acknowledges (report-now, cancel).
 */
export const COMMAND_STATUSES = ['pending', 'sent', 'accepted', 'running', 'succeeded', 'failed', 'refused', 'cancelled', 'delivered'] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];
/** Command types the probe acknowledges with events (accepted, running, an outcome); the others are delivered once handed over. */
export const ACKNOWLEDGED_TYPES: ReadonlySet<string> = new Set(['install', 'rollback', 'diagnose']);
export const TERMINAL_STATUSES: ReadonlySet<CommandStatus> = new Set<CommandStatus>(['succeeded', 'failed', 'refused', 'cancelled', 'delivered']);

export interface CommandRecord {
  readonly commandId: string;
  readonly probeId: string;
  readonly type: Command['type'];
  readonly body: Command;
  readonly rolloutId: string | null;
  readonly packSha256: string | null;
  readonly status: CommandStatus;
  readonly errorCode: string | null;
  readonly deploymentId: string | null;
  readonly createdAt: string;
  readonly sentAt: string | null;
  readonly updatedAt: string;
  readonly finishedAt: string | null;
}

export interface CommandRepository {
  insertMany(commands: readonly CommandRecord[]): Promise<void>;
  get(commandId: string): Promise<CommandRecord | null>;
  forProbe(probeId: string, limit: number): Promise<CommandRecord[]>;
  forRollout(rolloutId: string): Promise<CommandRecord[]>;
  /** Where these commands stand (status, error code, deployment), by command id; unknown ids are absent. */
  statuses(commandIds: readonly string[]): Promise<Map<string, Pick<CommandRecord, 'status' | 'errorCode' | 'deploymentId'>>>;
  /** Commands the probe has not acknowledged yet (pending or sent), oldest first. */
  unacknowledged(probeIds: readonly string[]): Promise<CommandRecord[]>;
  /**
   * For `/next`: the unacknowledged command never handed out by polling, else the one handed out
   * longest ago (and at least `repeatAfter` ago); it is marked as handed out now.
   */
  takeForPoll(probeId: string, now: string, repeatAfter: string): Promise<CommandRecord | null>;
  /**
   * pending → sent (install) or delivered (report-now, cancel: nothing acknowledges them); a
   * command the probe already acknowledged keeps its status.
   */
  markSent(commandIds: readonly string[], at: string): Promise<void>;
  /** Sets a status the server decided (cancelled); false when it was already final. */
  finish(commandId: string, status: CommandStatus, at: string): Promise<boolean>;
  /** Accepted or running, no word from the probe since `before`, not yet reported as stuck. */
  stuck(before: string): Promise<CommandRecord[]>;
  markStuckReported(commandId: string, at: string): Promise<void>;
  /** May this probe download this pack: a command to it names the pack. */
  probeMayFetch(probeId: string, sha256: string): Promise<boolean>;
  countsByStatus(): Promise<Record<string, number>>;
}

// ---------------------------------------------------------------------------------------------
// Audit and settings

export interface AuditEntry {
  readonly id: number;
  readonly at: string;
  /** `staff:<token id>`, `probe:<id>`, `local:<os user>`. */
  readonly actor: string;
  readonly actorName: string;
  /** `POST /api/v1/packs`, `cli server enroll`, … */
  readonly action: string;
  readonly target: string | null;
  readonly status: number;
  readonly detail: Record<string, unknown> | null;
}

export interface AuditQuery {
  readonly limit: number;
  readonly before?: number | undefined;
  readonly actor?: string | undefined;
  readonly action?: string | undefined;
  readonly since?: string | undefined;
}

export interface AuditRepository {
  append(e: Omit<AuditEntry, 'id'>): Promise<void>;
  query(q: AuditQuery): Promise<AuditEntry[]>;
}

export interface SettingsRepository {
  get(key: string): Promise<string | null>;
  set(key: string, value: string | null): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Ingest: one batch of MQTT messages, applied in one transaction

/** A probe as the rollout planner sees it: `state` is null until it has reported one. */
export interface PlanningProbe {
  readonly id: string;
  readonly online: boolean;
  readonly state: { readonly version: string; readonly product: string | null } | null;
}

export interface IngestBatch {
  readonly states: readonly { readonly probeId: string; readonly state: ProbeState; readonly receivedAt: string }[];
  readonly events: readonly StoredEvent[];
}

export interface CommandChange {
  readonly commandId: string;
  readonly probeId: string;
  readonly rolloutId: string | null;
  readonly status: CommandStatus;
  readonly errorCode: string | null;
  readonly deploymentId: string | null;
}

export interface IngestResult {
  /** Events stored for the first time (duplicates by id are left out), in arrival order. */
  readonly applied: readonly StoredEvent[];
  readonly duplicates: number;
  /** Messages from probes the server does not know (not enrolled). */
  readonly unknown: number;
  /** Every status change, in the order the events arrived (several for one command are all here). */
  readonly commandChanges: readonly CommandChange[];
  /**
   * Probes that (re)connected in this batch: an `online` event (each connection sends one), or a
   * state from a probe recorded as offline. Their unacknowledged commands are sent again.
   */
  readonly connected: readonly string[];
  readonly wentOffline: readonly string[];
  /** Probes whose stored state this batch replaced. */
  readonly stated: readonly string[];
}

export interface Store {
  readonly tokens: TokenRepository;
  readonly probes: ProbeRepository;
  readonly packs: PackRepository;
  readonly commands: CommandRepository;
  readonly audit: AuditRepository;
  readonly settings: SettingsRepository;
  readonly sessions: SessionRepository;
  /** The rollouts module's repository (server/src/rollouts/rollout-repository.ts). */
  readonly rollouts: RolloutRepository;
  ingest(batch: IngestBatch): Promise<IngestResult>;
  /** One retention pass (retention.ts): what is older or beyond the counts goes. */
  prune(policy: RetentionPolicy, now: Date): Promise<PruneResult>;
  /** A consistent copy of the whole database while it is in use (the SQLite backup API). */
  backup(destination: string): Promise<void>;
  close(): Promise<void>;
}
