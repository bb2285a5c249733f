import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { TOPIC_PREFIX } from '../../../base/src/protocol/topics.js';
import { ensureMqttSecret, type DataPaths } from '../data-dir.js';
import type { Store } from '../store/types.js';
import { isReservedProbeId, SERVER_MQTT_USER } from './identity.js';
import { mosquittoPasswordHash } from './mosquitto-hash.js';

/**
 * `sonde server mosquitto-config --data DIR --out OUT`: an external Mosquitto 2.0 that enforces
 * what the embedded broker does (notes/fleet-facts.md):
 *
 *   OUT/mosquitto.conf  no anonymous clients, client id = username, no persistence, loopback
 *                       listener (+ TLS listeners under the server CA with --listen)
 *   OUT/passwd          PBKDF2 ($7$) hashes: the server user and every enrolled probe (0600)
 *   OUT/acl             the server user reads and writes sonde/v1/probes/#; every other user,
 *                       through `%u` patterns, writes only its own state and events and reads
 *                       only its own commands
 *
 * Mosquitto's ACLs differ from aedes' in what a refused client sees: a publish to another probe's
 * topic is acknowledged and dropped, a subscribe to another probe's commands is granted and never
 * delivers. The directory is remembered, and later enrollments rewrite its password file; send
 * Mosquitto SIGHUP to reload it.
 */
export const MOSQUITTO_DIR_SETTING = 'mosquitto.dir';

export interface MosquittoConfigOptions {
  readonly out: string;
  readonly port: number;
  readonly host?: string | undefined;
  /** TLS listeners (port tlsPort) on these addresses, with the server certificate. */
  readonly listen?: readonly string[] | undefined;
  readonly tlsPort?: number | undefined;
  readonly tls?: { readonly certPem: string; readonly keyPem: string; readonly caPem: string } | undefined;
  /** Mosquitto drops root privileges to this user (default: its own `mosquitto`). */
  readonly runAs?: string | undefined;
}

export interface MosquittoFiles {
  readonly conf: string;
  readonly passwd: string;
  readonly acl: string;
  readonly users: number;
}

export async function writeMosquittoConfig(store: Store, paths: DataPaths, o: MosquittoConfigOptions): Promise<MosquittoFiles> {
  const out = resolve(o.out);
  await mkdir(out, { recursive: true, mode: 0o700 });
  const files = { conf: join(out, 'mosquitto.conf'), passwd: join(out, 'passwd'), acl: join(out, 'acl') };
  const users = await writePasswords(store, paths, files.passwd);
  await writeFileAtomic(
    files.acl,
    [
      '# Written by `sonde server mosquitto-config`.',
      `user ${SERVER_MQTT_USER}`,
      `topic readwrite ${TOPIC_PREFIX}/#`,
      '',
      '# Every other user is a probe, its username its probe id.',
      `pattern write ${TOPIC_PREFIX}/%u/state`,
      `pattern write ${TOPIC_PREFIX}/%u/events`,
      `pattern read ${TOPIC_PREFIX}/%u/commands`,
      '',
    ].join('\n'),
  );
  const lines = [
    '# Written by `sonde server mosquitto-config`; start with: mosquitto -c ' + files.conf,
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${files.passwd}`,
    `acl_file ${files.acl}`,
    // A probe cannot take over another's session by choosing its client id.
    'use_username_as_clientid true',
    // The server keeps the last state of each probe; nothing needs to survive a broker restart.
    'persistence false',
    // The server's one subscription takes every probe's events and wills: Mosquitto's default of
    // 1,000 queued QoS 1 messages per client drops some of them when thousands of probes connect
    // at once (measured with bench/fleet, 10,000 probes). Bounded, far above a reconnect storm.
    'max_queued_messages 1000000',
    'log_dest stdout',
    'log_type error',
    'log_type warning',
    'log_type notice',
    ...(o.runAs ? [`user ${o.runAs}`] : []),
    '',
    `listener ${o.port} ${o.host ?? '127.0.0.1'}`,
  ];
  if (o.listen?.length && o.tls) {
    const ca = join(out, 'ca.crt');
    const cert = join(out, 'server.crt');
    const key = join(out, 'server.key');
    await writeFileAtomic(ca, o.tls.caPem);
    await writeFileAtomic(cert, o.tls.certPem);
    await writeFileAtomic(key, o.tls.keyPem, { mode: 0o600 });
    for (const address of o.listen) {
      lines.push('', `listener ${o.tlsPort ?? 8883} ${address}`, `cafile ${ca}`, `certfile ${cert}`, `keyfile ${key}`, 'tls_version tlsv1.2');
    }
  }
  await writeFileAtomic(files.conf, `${lines.join('\n')}\n`);
  await store.settings.set(MOSQUITTO_DIR_SETTING, out);
  return { ...files, users };
}

async function writePasswords(store: Store, paths: DataPaths, file: string): Promise<number> {
  const secret = await ensureMqttSecret(paths);
  // One line per user, the server's first. A probe enrolled under a reserved id (before such ids
  // were refused) is left out: it would share the server's user and its ACL.
  const users = new Map<string, string>([[SERVER_MQTT_USER, mosquittoPasswordHash(secret)]]);
  for (const p of await store.probes.mqttPasswordHashes()) {
    if (!isReservedProbeId(p.probeId) && !users.has(p.probeId)) users.set(p.probeId, p.hash);
  }
  const entries = [...users].map(([user, hash]) => `${user}:${hash}`);
  await writeFileAtomic(file, `${entries.join('\n')}\n`, { mode: 0o600 });
  return entries.length;
}

/** After an enrollment: the remembered Mosquitto directory gets the new password file. */
export async function refreshMosquittoPasswords(store: Store, paths: DataPaths): Promise<void> {
  const dir = await store.settings.get(MOSQUITTO_DIR_SETTING);
  if (dir) await writePasswords(store, paths, join(dir, 'passwd'));
}
