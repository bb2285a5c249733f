import type { CommandRecord, PackRecord, ProbeRecord } from '../store/types.js';
import type { CommandView, PackView, ProbeView } from './response-schemas.js';

/** What the API shows of the stored records: the same shape in every route and in the CLI. */
export function probeView(p: ProbeRecord): ProbeView {
  const s = p.state;
  return {
    id: p.id,
    channel: p.channel,
    groups: p.groups,
    tags: p.tags,
    online: p.online,
    lastSeen: p.lastSeen,
    version: s?.version ?? null,
    appVersion: s?.appVersion ?? null,
    slot: s?.slot ?? null,
    health: s?.health ?? null,
    agentVersion: s?.agentVersion ?? null,
    busy: s?.busy ?? null,
    lastDeployment: s?.lastDeployment ?? null,
    lastCommitted: p.lastCommitted,
    stateAt: p.stateAt,
    enrolledAt: p.enrolledAt,
  };
}

export function packView(p: PackRecord): PackView {
  return { sha256: p.sha256, size: p.size, ...p.summary, uploadedAt: p.uploadedAt, uploadedBy: p.uploadedBy, hasReleaseNotes: p.releaseNotes !== null };
}

export function commandView(c: CommandRecord): CommandView {
  return {
    commandId: c.commandId,
    probeId: c.probeId,
    type: c.type,
    rolloutId: c.rolloutId,
    packSha256: c.packSha256,
    status: c.status,
    errorCode: c.errorCode,
    deploymentId: c.deploymentId,
    createdAt: c.createdAt,
    sentAt: c.sentAt,
    updatedAt: c.updatedAt,
    finishedAt: c.finishedAt,
  };
}
