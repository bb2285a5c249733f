import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../base/src/fs/atomic.js';
import { tryPidLock } from '../../base/src/os/pid-lock.js';
import { ServerError } from './errors.js';

/**
 * The server's data directory: everything it owns, in one place that `sonde server backup`
 * copies and `restore` recreates.
 *
 *   sonde.db            the database (WAL)
 *   packs/<sha256>.spk  the content-addressed pack store
 *   uploads/            uploads being received and verified (emptied at start)
 *   keyring/            the vendor roots uploads are verified against (+ revocations.json)
 *   ca/ca.crt, ca.key   the server's own CA (TLS and probe credentials), key 0600
 *   tls/                the server certificate for --listen addresses, issued by that CA
 *   mqtt-server.secret  the password the server uses on an external broker (0600)
 *   server.json         the endpoints of the last start, for `sonde server enroll`
 *   server.pid          held while a server runs on the directory
 */
export interface DataPaths {
  readonly root: string;
  readonly db: string;
  readonly packs: string;
  readonly uploads: string;
  readonly keyring: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly tlsMeta: string;
  readonly mqttSecret: string;
  readonly endpoints: string;
  readonly pid: string;
}

export function dataPaths(root: string): DataPaths {
  return {
    root,
    db: join(root, 'sonde.db'),
    packs: join(root, 'packs'),
    uploads: join(root, 'uploads'),
    keyring: join(root, 'keyring'),
    caCert: join(root, 'ca', 'ca.crt'),
    caKey: join(root, 'ca', 'ca.key'),
    tlsCert: join(root, 'tls', 'server.crt'),
    tlsKey: join(root, 'tls', 'server.key'),
    tlsMeta: join(root, 'tls', 'server.json'),
    mqttSecret: join(root, 'mqtt-server.secret'),
    endpoints: join(root, 'server.json'),
    pid: join(root, 'server.pid'),
  };
}

/** Creates the directory tree (0700: it holds the CA key and the token hashes). */
export async function createDataDirs(p: DataPaths): Promise<void> {
  await mkdir(p.root, { recursive: true, mode: 0o700 });
  for (const dir of [p.packs, p.uploads, p.keyring, join(p.root, 'ca'), join(p.root, 'tls')]) await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** For the local commands (enroll, gc, backup, …): the directory must hold a server's database. */
export function requireDataDir(root: string): DataPaths {
  const p = dataPaths(root);
  if (!existsSync(p.db)) throw new ServerError('DATA_DIR_INVALID', `${root} is not a Sonde server data directory (no sonde.db); start \`sonde server --data ${root}\` once first`);
  return p;
}

export async function clearUploads(p: DataPaths): Promise<void> {
  for (const name of await readdir(p.uploads).catch(() => [] as string[])) await rm(join(p.uploads, name), { force: true, recursive: true });
}

/**
 * Takes the directory for one running server: server.pid is created exclusively; one left by a
 * process that no longer runs (or is a zombie waiting for a late reaper) is taken over. Returns
 * the release function.
 */
export async function lockDataDir(p: DataPaths): Promise<() => Promise<void>> {
  const lock = tryPidLock(p.pid, { selfIsStale: true });
  if (!lock.taken) throw new ServerError('DATA_DIR_IN_USE', `a server (pid ${lock.holder}) already runs on ${p.root}`);
  return async () => lock.release();
}

/** The password of the server's own user on an external broker, made once. */
export async function ensureMqttSecret(p: DataPaths): Promise<string> {
  try {
    return (await readFile(p.mqttSecret, 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const secret = randomBytes(32).toString('base64url');
  await writeFileAtomic(p.mqttSecret, `${secret}\n`, { mode: 0o600 });
  return secret;
}

// ---------------------------------------------------------------------------------------------
// server.json: where the last start listened, so that enrollment can name the server.

const endpointsSchema = z
  .object({
    format: z.literal('sonde-server-endpoints-1'),
    /** What probes are told by default: the first --listen address, else loopback. */
    probeHttp: z.string().url(),
    probeMqtt: z.string().url(),
    http: z.string().url(),
    mqtt: z.string().url(),
    https: z.array(z.string().url()),
    mqtts: z.array(z.string().url()),
  })
  .strict();
export type Endpoints = z.infer<typeof endpointsSchema>;

export async function writeEndpoints(p: DataPaths, e: Omit<Endpoints, 'format'>): Promise<void> {
  await writeFileAtomic(p.endpoints, `${JSON.stringify({ format: 'sonde-server-endpoints-1', ...e }, null, 2)}\n`);
}

export async function readEndpoints(p: DataPaths): Promise<Endpoints | null> {
  let text: string;
  try {
    text = await readFile(p.endpoints, 'utf8');
  } catch {
    return null;
  }
  const r = endpointsSchema.safeParse(JSON.parse(text));
  return r.success ? r.data : null;
}
