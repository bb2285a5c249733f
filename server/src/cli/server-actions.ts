import { userInfo } from 'node:os';
import { resolve } from 'node:path';
import pino, { type Logger } from 'pino';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { hashToken, newTokenId, newTokenSecret } from '../auth/tokens.js';
import { backupDataDir } from '../backup/backup.js';
import { restoreDataDir } from '../backup/restore.js';
import { ensureCa, ensureTlsCertificate } from '../ca/server-ca.js';
import { createDataDirs, dataPaths, requireDataDir, type DataPaths } from '../data-dir.js';
import { ProbeService } from '../inventory/probe-service.js';
import { writeMosquittoConfig, refreshMosquittoPasswords } from '../mqtt/mosquitto-config.js';
import { addTrustedRoots } from '../packs/keyring-dir.js';
import { PackService } from '../packs/pack-service.js';
import { PackStore } from '../packs/pack-store.js';
import { startServer } from '../server.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { ROLES, type Role } from '../store/types.js';
import { exportPacks, importPacks } from '../transfer/transfer.js';
import { resolvePackRef } from './pack-ref.js';
import { ApiClient, resolveTarget, type ApiFlags } from './api-client.js';
import { parseDuration, parseSize, printJson } from '../../../base/src/cli/output.js';

/**
 * `sonde server` and its local subcommands. The local ones open the data directory directly
 * (whoever can read it holds the CA key anyway, so this is admin access) and work beside a
 * running server (SQLite WAL); each records itself in the audit log as `local:<os user>`.
 */
export interface ServeFlags {
  data: string;
  port: string;
  mqttPort?: string;
  keyring?: string;
  listen: string[];
  mqttUrl?: string;
  webhookUrl?: string;
  stuckAfter?: string;
  keepEvents?: string;
  keepAudit?: string;
  keepHistory?: string;
  maxPackSize?: string;
  logLevel?: string;
}

function portOf(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CliError('USAGE', `${flag} takes a port number, not ${text}`);
  return n;
}

function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new CliError('USAGE', (e as Error).message);
  }
}

export async function serveAction(flags: ServeFlags): Promise<void> {
  const server = await startServer({
    dataDir: flags.data,
    port: portOf(flags.port, '--port'),
    ...(flags.mqttPort !== undefined ? { mqttPort: portOf(flags.mqttPort, '--mqtt-port') } : {}),
    ...(flags.keyring ? { keyring: flags.keyring } : {}),
    listen: flags.listen,
    ...(flags.mqttUrl ? { mqttUrl: flags.mqttUrl } : {}),
    ...(flags.webhookUrl ? { webhookUrl: flags.webhookUrl } : {}),
    ...(flags.stuckAfter ? { stuckAfterMs: usage(() => parseDuration(flags.stuckAfter!)) } : {}),
    ...(flags.keepEvents ? { keepEventsMs: usage(() => parseDuration(flags.keepEvents!)) } : {}),
    ...(flags.keepAudit ? { keepAuditMs: usage(() => parseDuration(flags.keepAudit!)) } : {}),
    ...(flags.keepHistory ? { keepHistoryMs: usage(() => parseDuration(flags.keepHistory!)) } : {}),
    ...(flags.maxPackSize ? { maxPackBytes: usage(() => parseSize(flags.maxPackSize!)) } : {}),
    ...(flags.logLevel ? { logLevel: flags.logLevel as 'info' } : {}),
  });
  const out = [`sonde server: data ${server.context.paths.root}`, ...server.httpUrls.map((u) => `http  ${u}`), ...server.mqttUrls.map((u) => `mqtt  ${u}`)];
  // Printed once, on the first start only: the server keeps its hash and nothing else.
  if (server.adminToken) out.push(`admin token: ${server.adminToken}`);
  process.stdout.write(`${out.join('\n')}\n`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.context.log.info({ signal }, 'stopping');
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

// ---------------------------------------------------------------------------------------------
// Local commands

interface Local {
  readonly paths: DataPaths;
  readonly store: SqliteStore;
  readonly log: Logger;
  audit(action: string, target: string | null, detail: Record<string, unknown> | null): Promise<void>;
  close(): Promise<void>;
}

async function openLocal(dataDir: string, create = false): Promise<Local> {
  if (create) await createDataDirs(dataPaths(resolve(dataDir)));
  const paths = create ? dataPaths(resolve(dataDir)) : requireDataDir(resolve(dataDir));
  const store = SqliteStore.open(paths.db);
  const user = userInfo().username;
  return {
    paths,
    store,
    log: pino({ level: 'silent' }),
    audit: (action, target, detail) => store.audit.append({ at: new Date().toISOString(), actor: `local:${user}`, actorName: user, action: `cli ${action}`, target, status: 0, detail }),
    close: () => store.close(),
  };
}

async function withLocal<T>(dataDir: string, fn: (l: Local) => Promise<T>, create = false): Promise<T> {
  const l = await openLocal(dataDir, create);
  try {
    return await fn(l);
  } finally {
    await l.close();
  }
}

export async function enrollAction(probeId: string, flags: { data: string; serverUrl?: string; mqttUrl?: string; out?: string }): Promise<void> {
  await withLocal(flags.data, async (l) => {
    const probes = new ProbeService(l.store, l.paths, l.log);
    probes.afterEnroll(() => refreshMosquittoPasswords(l.store, l.paths));
    const { credentials, created } = await probes.enroll(probeId, { httpUrl: flags.serverUrl, mqttUrl: flags.mqttUrl });
    await l.audit('server enroll', probeId, { created, http: credentials.server.http, mqtt: credentials.server.mqtt });
    const text = `${JSON.stringify(credentials, null, 2)}\n`;
    if (flags.out) {
      await writeFileAtomic(resolve(flags.out), text, { mode: 0o600 });
      process.stderr.write(`wrote ${flags.out} (mode 0600) for probe ${probeId}${created ? '' : ' (re-keyed: its earlier token no longer works)'}\n`);
    } else {
      process.stdout.write(text);
    }
  });
}

export async function tokenCreateAction(flags: ApiFlags & { role: string; name: string; data?: string; json?: boolean }): Promise<void> {
  if (!(ROLES as readonly string[]).includes(flags.role)) throw new CliError('USAGE', `--role is one of ${ROLES.join(', ')}`);
  const role = flags.role as Role;
  let answer: { id: string; name: string; role: string; token: string };
  if (flags.data) {
    answer = await withLocal(flags.data, async (l) => {
      const secret = newTokenSecret();
      const t = await l.store.tokens.create({ id: newTokenId(), kind: 'staff', name: flags.name, role, probeId: null, hash: hashToken(secret) });
      await l.audit('server token create', t.id, { name: t.name, role });
      return { id: t.id, name: t.name, role, token: secret };
    });
  } else {
    const client = new ApiClient(await resolveTarget(flags));
    answer = (await client.json<{ id: string; name: string; role: string; token: string }>('POST', '/api/v1/tokens', { name: flags.name, role })).body;
  }
  if (flags.json) return printJson(answer);
  process.stdout.write(`token ${answer.id} (${answer.role}, ${answer.name}): ${answer.token}\n`);
}

export async function trustAddAction(cert: string, flags: { data: string }): Promise<void> {
  await withLocal(flags.data, async (l) => {
    const r = await addTrustedRoots(l.paths.keyring, resolve(cert));
    await l.audit('server trust add', r.roots.map((x) => x.fingerprint).join(','), { roots: r.roots.map((x) => x.subject), revocations: r.revocations });
    for (const root of r.roots) process.stdout.write(`${root.added ? 'trusted' : 'already trusted'}: ${root.subject} (sha256 ${root.fingerprint})\n`);
    if (r.revocations) process.stdout.write('revocations.json taken\n');
  });
}

export async function gcAction(flags: { data: string; olderThan: string; dryRun?: boolean; json?: boolean }): Promise<void> {
  const olderThanMs = usage(() => parseDuration(flags.olderThan));
  await withLocal(flags.data, async (l) => {
    const packs = new PackService(l.store, new PackStore(l.paths.packs, l.paths.uploads), l.paths.keyring, l.log, 1);
    const r = await packs.gc({ olderThanMs, dryRun: flags.dryRun === true });
    if (!flags.dryRun) await l.audit('server gc', null, { deleted: r.deleted.length, orphans: r.orphans.length });
    if (flags.json) return printJson({ ...r, dryRun: flags.dryRun === true });
    const verb = flags.dryRun ? 'would delete' : 'deleted';
    for (const sha of r.deleted) process.stdout.write(`${verb} ${sha}\n`);
    for (const sha of r.orphans) process.stdout.write(`${verb} ${sha} (a file without a record)\n`);
    process.stdout.write(`${r.deleted.length + r.orphans.length} pack(s) ${verb}\n`);
  });
}

export async function backupAction(file: string, flags: { data: string }): Promise<void> {
  const m = await backupDataDir(resolve(flags.data), resolve(file));
  await withLocal(flags.data, (l) => l.audit('server backup', resolve(file), { packs: m.packs.length }));
  process.stdout.write(`backup ${file}: database and ${m.packs.length} pack(s), ${m.createdAt}\n`);
}

export async function restoreAction(file: string, flags: { data: string }): Promise<void> {
  const m = await restoreDataDir(resolve(file), resolve(flags.data));
  await withLocal(flags.data, (l) => l.audit('server restore', resolve(file), { packs: m.packs.length, backupCreatedAt: m.createdAt }));
  process.stdout.write(`restored ${flags.data} from ${file} (taken ${m.createdAt}, ${m.packs.length} pack(s)); start it with: sonde server --data ${flags.data}\n`);
}

export async function exportAction(flags: { data: string; out: string; pack: string[]; all?: boolean }): Promise<void> {
  if (!flags.all && flags.pack.length === 0) throw new CliError('USAGE', 'name the packs to export (--pack SHA256, repeatable) or --all');
  await withLocal(flags.data, async (l) => {
    const known = async (): Promise<string[]> => (await l.store.packs.list()).map((p) => p.sha256);
    const packs = flags.all ? 'all' : await Promise.all(flags.pack.map((ref) => resolvePackRef(ref, known)));
    const m = await exportPacks(l.store, l.paths, resolve(flags.out), packs);
    await l.audit('server export', resolve(flags.out), { packs: m.packs.map((p) => p.sha256) });
    for (const p of m.packs) process.stdout.write(`exported ${p.sha256}  ${p.product} ${p.version} (${p.kind})\n`);
  });
}

export async function importAction(file: string, flags: { data: string }): Promise<void> {
  await withLocal(flags.data, async (l) => {
    const r = await importPacks(l.store, l.paths, resolve(file), `import:${userInfo().username}`);
    const counts = Object.fromEntries(Object.entries(r.sections).map(([name, s]) => [name, s.imported]));
    await l.audit('server import', resolve(file), { packs: r.packs.map((p) => p.sha256), sections: counts });
    for (const p of r.packs) process.stdout.write(`${p.created ? 'imported' : 'already present'} ${p.sha256}\n`);
    for (const [name, s] of Object.entries(r.sections)) {
      process.stdout.write(`imported ${s.imported} ${name}\n`);
      for (const note of s.notes) process.stdout.write(`  ${note}\n`);
    }
  });
}

export async function mosquittoConfigAction(flags: { data: string; out: string; port: string; host?: string; listen: string[]; tlsPort?: string; user?: string }): Promise<void> {
  await withLocal(flags.data, async (l) => {
    const tls = flags.listen.length > 0 ? await ensureTlsCertificate(l.paths, (await ensureCa(l.paths)).ca, flags.listen) : undefined;
    const files = await writeMosquittoConfig(l.store, l.paths, {
      out: flags.out,
      port: portOf(flags.port, '--port'),
      host: flags.host,
      listen: flags.listen,
      tlsPort: flags.tlsPort === undefined ? undefined : portOf(flags.tlsPort, '--tls-port'),
      tls,
      runAs: flags.user,
    });
    await l.audit('server mosquitto-config', resolve(flags.out), { users: files.users });
    process.stdout.write(`wrote ${files.conf}, ${files.passwd} (${files.users} users), ${files.acl}\nrun: mosquitto -c ${files.conf}\nthen: sonde server --data ${flags.data} --mqtt-url mqtt://127.0.0.1:${flags.port}\n`);
    // The broker comes first: this may be the data directory's first use.
  }, true);
}
