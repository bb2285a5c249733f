import { progressBar } from '../../../base/src/cli/progress.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';
import { bytes, printJson, shortTime, table } from '../../../base/src/cli/output.js';

/**
 * The staff CLI (issue 5): `sonde upload`, `sonde packs`, `sonde probes`, `sonde probe`. Each is
 * a thin client of the HTTP API; `--json` prints what the API answered.
 */
export interface JsonFlag {
  json?: boolean;
}

interface PackView {
  sha256: string;
  size: number;
  kind: string;
  product: string;
  version: string;
  encrypted: boolean;
  signer: string;
  uploadedAt: string;
  created?: boolean;
}

interface ProbeView {
  id: string;
  channel: string;
  groups: string[];
  tags: string[];
  online: boolean;
  lastSeen: string | null;
  version: string | null;
  health: string | null;
  slot: string | null;
  lastCommitted: { version: string | null; at: string } | null;
}

export async function uploadAction(pack: string, flags: ApiFlags & JsonFlag): Promise<void> {
  const client = new ApiClient(await resolveTarget(flags));
  const bar = flags.json ? null : progressBar();
  const r = await client.upload<PackView>('/api/v1/packs', pack, (sent, total) => bar?.update(sent, total, 'uploading'));
  bar?.done();
  if (flags.json) return printJson(r.body);
  const p = r.body;
  process.stdout.write(`${p.created === false ? 'already stored' : 'stored'} ${p.sha256}  ${p.product} ${p.version} (${p.kind}, ${bytes(p.size)}${p.encrypted ? ', encrypted' : ''})\n`);
}

export async function packsAction(flags: ApiFlags & JsonFlag): Promise<void> {
  const client = new ApiClient(await resolveTarget(flags));
  const { body } = await client.json<PackView[]>('GET', '/api/v1/packs');
  if (flags.json) return printJson({ packs: body });
  process.stdout.write(
    `${table(
      ['SHA256', 'PRODUCT', 'VERSION', 'KIND', 'SIZE', 'UPLOADED'],
      body.map((p) => [p.sha256.slice(0, 16), p.product, p.version, p.kind, bytes(p.size), shortTime(p.uploadedAt)]),
    )}\n`,
  );
}

export interface ProbesFlags extends ApiFlags, JsonFlag {
  channel?: string;
  group?: string;
  tag?: string;
  online?: boolean;
  offline?: boolean;
}

export async function probesAction(flags: ProbesFlags): Promise<void> {
  const client = new ApiClient(await resolveTarget(flags));
  const q = new URLSearchParams();
  if (flags.channel) q.set('channel', flags.channel);
  if (flags.group) q.set('group', flags.group);
  if (flags.tag) q.set('tag', flags.tag);
  if (flags.online) q.set('online', 'true');
  if (flags.offline) q.set('online', 'false');
  q.set('limit', '10000');
  const { body, headers } = await client.json<ProbeView[]>('GET', `/api/v1/probes?${q}`);
  if (flags.json) return printJson({ probes: body, total: Number(headers['x-total-count'] ?? body.length) });
  process.stdout.write(
    `${table(
      ['ID', 'CHANNEL', 'VERSION', 'HEALTH', 'ONLINE', 'LAST SEEN', 'GROUPS', 'TAGS'],
      body.map((p) => [p.id, p.channel, p.version ?? '-', p.health ?? '-', p.online ? 'yes' : 'no', (p.lastSeen ? shortTime(p.lastSeen) : 'never'), p.groups.join(',') || '-', p.tags.join(',') || '-']),
    )}\n${headers['x-total-count'] ?? body.length} probe(s)\n`,
  );
}

export interface ProbeFlags extends ApiFlags, JsonFlag {
  setChannel?: string;
  addGroup?: string[];
  removeGroup?: string[];
  addTag?: string[];
  removeTag?: string[];
}

interface ProbeDetail extends ProbeView {
  deployments: { deploymentId: string; version: string | null; state: string | null; outcome: string | null; errorCode: string | null; startedAt: string }[];
  commands: { commandId: string; type: string; status: string; errorCode: string | null; createdAt: string }[];
}

export async function probeAction(id: string, flags: ProbeFlags): Promise<void> {
  const client = new ApiClient(await resolveTarget(flags));
  const patch = {
    ...(flags.setChannel ? { channel: flags.setChannel } : {}),
    ...(flags.addGroup?.length ? { addGroups: flags.addGroup } : {}),
    ...(flags.removeGroup?.length ? { removeGroups: flags.removeGroup } : {}),
    ...(flags.addTag?.length ? { addTags: flags.addTag } : {}),
    ...(flags.removeTag?.length ? { removeTags: flags.removeTag } : {}),
  };
  const path = `/api/v1/probes/${encodeURIComponent(id)}`;
  if (Object.keys(patch).length > 0) await client.json('PATCH', path, patch);
  const { body: p } = await client.json<ProbeDetail>('GET', path);
  if (flags.json) return printJson(p);
  const lines = [
    `probe     ${p.id}`,
    `online    ${p.online ? 'yes' : 'no'} (last seen ${p.lastSeen ?? 'never'})`,
    `version   ${p.version ?? '-'} (slot ${p.slot ?? '-'}, health ${p.health ?? '-'})`,
    `committed ${p.lastCommitted ? `${p.lastCommitted.version ?? '?'} at ${p.lastCommitted.at}` : '-'}`,
    `channel   ${p.channel}`,
    `groups    ${p.groups.join(', ') || '-'}`,
    `tags      ${p.tags.join(', ') || '-'}`,
    '',
    'deployments:',
    p.deployments.length
      ? table(['DEPLOYMENT', 'VERSION', 'STATE', 'OUTCOME', 'CODE', 'STARTED'], p.deployments.map((d) => [d.deploymentId, d.version ?? '-', d.state ?? '-', d.outcome ?? '-', d.errorCode ?? '-', d.startedAt]))
      : '  none',
    '',
    'commands:',
    p.commands.length ? table(['COMMAND', 'TYPE', 'STATUS', 'CODE', 'CREATED'], p.commands.map((c) => [c.commandId, c.type, c.status, c.errorCode ?? '-', c.createdAt])) : '  none',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
