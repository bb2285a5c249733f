/**
 * What the dashboard reads from the API. These mirror the server's response schemas
 * (server/src/http/response-schemas.ts); server/src/http/web-types-check.ts makes the server's
 * build fail when a schema stops fitting them, so the page cannot drift from the API unnoticed.
 */
export type Role = 'viewer' | 'operator' | 'admin';

export interface Session {
  tokenId: string;
  name: string;
  role: Role;
  csrfToken: string | null;
  expiresAt: string | null;
}

export interface LastDeployment {
  id: string;
  outcome: string;
  errorCode: string | null;
  version: string | null;
  at: string | null;
}

export interface Probe {
  id: string;
  channel: string;
  groups: readonly string[];
  tags: readonly string[];
  online: boolean;
  lastSeen: string | null;
  version: string | null;
  appVersion: string | null;
  slot: string | null;
  health: string | null;
  agentVersion: string | null;
  busy: boolean | null;
  lastDeployment: LastDeployment | null;
  lastCommitted: { deploymentId: string; version: string | null; at: string } | null;
  stateAt: string | null;
  enrolledAt: string;
}

export interface ProbeEventView {
  id: string;
  seq: number;
  type: string;
  at: string;
  receivedAt: string;
  deploymentId?: string | undefined;
  commandId?: string | undefined;
  state?: string | undefined;
  outcome?: string | undefined;
  code?: string | undefined;
  message?: string | undefined;
  version?: string | undefined;
  bytes?: number | undefined;
  totalBytes?: number | undefined;
}

export interface Deployment {
  deploymentId: string;
  commandId: string | null;
  packSha256: string | null;
  version: string | null;
  state: string | null;
  outcome: string | null;
  errorCode: string | null;
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface Command {
  commandId: string;
  type: string;
  rolloutId: string | null;
  status: string;
  errorCode: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export interface ProbeDetail extends Probe {
  state: Record<string, unknown> | null;
  deployments: Deployment[];
  commands: Command[];
  events: ProbeEventView[];
}

export interface Receipt {
  deployment: Deployment;
  steps: { state: string; at: string; seconds: number | null }[];
  outcome: { outcome: string; code: string | null; message: string | null; at: string } | null;
  events: ProbeEventView[];
}

export type Problem = 'offline' | 'down' | 'degraded' | 'failed-deployment' | 'stuck';

export interface FleetSummary {
  total: number;
  online: number;
  offline: number;
  byHealth: Record<string, number>;
  byVersion: Record<string, number>;
  byChannel: Record<string, number>;
  problems: { counts: Record<Problem, number>; probes: (Probe & { problems: Problem[] })[] };
  at: string;
}

export interface Pack {
  sha256: string;
  size: number;
  kind: string;
  product: string;
  version: string;
  compatible: readonly string[];
  requires: string | null;
  securityVersion: number;
  createdAt: string;
  encrypted: boolean;
  payloads: readonly { name: string; type: string; size: number }[];
  signer: string;
  uploadedAt: string;
  uploadedBy: string;
  hasReleaseNotes: boolean;
}

export interface Certificate {
  subject: string;
  issuer: string;
  serialNumber: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
}

export interface PackDetail extends Pack {
  manifest: Record<string, unknown>;
  releaseNotes: string | null;
  signerChain: { trusted: boolean; code: string | null; message: string | null; chain: readonly Certificate[] };
}

export interface WaveCounts {
  size: number;
  pending: number;
  sent: number;
  accepted: number;
  installing: number;
  committed: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  openFailures: number;
  eligible: number;
}

export interface Rollout {
  id: string;
  name: string | null;
  state: string;
  packSha256: string;
  product: string;
  version: string;
  environment: string | null;
  wave: number;
  waveCount: number;
  hasCanary: boolean;
  waitUntil: string | null;
  pausedReason: string | null;
  createdByName: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface RolloutStatus extends Rollout {
  progress: WaveCounts & { updated: number };
  waves: readonly (WaveCounts & { wave: number; kind: 'canary' | 'wave'; started: boolean })[];
  window: { open: boolean; nextOpening: string | null };
  history: readonly { at: string; from: string; event: string; to: string; wave: number; actor: string; detail: Record<string, unknown> | null }[];
}

export interface Target {
  probeId: string;
  wave: number;
  state: string;
  attempt: number;
  commandId: string | null;
  errorCode: string | null;
  deploymentId: string | null;
  skipReason: string | null;
  updatedAt: string;
}

export interface TokenView {
  id: string;
  kind: 'staff' | 'probe';
  name: string;
  role: Role | null;
  probeId: string | null;
  createdAt: string;
  revokedAt: string | null;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  actorName: string;
  action: string;
  target: string | null;
  status: number;
  detail: Record<string, unknown> | null;
}

/** One message of the live stream (`change`). */
export interface LiveChange {
  resync?: boolean;
  probes?: string[] | '*';
  events?: { probeId: string; type: string; at: string; deploymentId?: string; outcome?: string; code?: string }[];
  commands?: { commandId: string; probeId: string; rolloutId: string | null; status: string }[];
  rollouts?: string[];
  packs?: boolean;
}
