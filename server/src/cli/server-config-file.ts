import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ServerError } from '../errors.js';
import type { ServeFlags } from './server-actions.js';

/**
 * `sonde server --config FILE` (the Debian package's /etc/sonde/server.json): the options of
 * `sonde server` as one JSON object, keys named as the long options in camelCase (`data`, `port`,
 * `listen`, `keepEvents`, …). Parsed strictly: an unknown key or a wrong type is
 * SERVER_OPTIONS_INVALID naming it, before anything starts. An option given on the command line
 * wins over the file.
 */
const duration = z.string().max(32);
export const serverConfigFileSchema = z
  .object({
    data: z.string().min(1),
    port: z.number().int().min(0).max(65535).optional(),
    mqttPort: z.number().int().min(0).max(65535).optional(),
    keyring: z.string().min(1).optional(),
    listen: z.array(z.string()).max(64).optional(),
    mqttUrl: z.string().optional(),
    webhookUrl: z.string().optional(),
    stuckAfter: duration.optional(),
    keepEvents: duration.optional(),
    keepAudit: duration.optional(),
    keepHistory: duration.optional(),
    maxPackSize: z.string().max(32).optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  })
  .strict();
export type ServerConfigFile = z.infer<typeof serverConfigFileSchema>;

export async function readServerConfigFile(path: string): Promise<ServerConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ServerError('SERVER_OPTIONS_INVALID', `server config ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ServerError('SERVER_OPTIONS_INVALID', `server config ${path}: not JSON (${(e as Error).message})`);
  }
  const r = serverConfigFileSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const where = [...i.path, ...(i.code === 'unrecognized_keys' ? i.keys : [])].join('.') || '(root)';
    throw new ServerError('SERVER_OPTIONS_INVALID', `server config ${path}: ${i.code === 'unrecognized_keys' ? `unknown key ${where}` : `${where}: ${i.message}`}`);
  }
  return r.data;
}

/** The file's options under those given on the command line (`fromCli(name)`: given there). */
export function mergeServerFlags(file: ServerConfigFile, flags: ServeFlags, fromCli: (name: keyof ServeFlags) => boolean): ServeFlags {
  const pick = <K extends keyof ServeFlags>(k: K, v: ServeFlags[K] | undefined): ServeFlags[K] | undefined => (fromCli(k) || v === undefined ? flags[k] : v);
  const merged: ServeFlags = {
    ...flags,
    data: pick('data', file.data) ?? flags.data,
    port: pick('port', file.port === undefined ? undefined : String(file.port)) ?? flags.port,
    listen: fromCli('listen') && flags.listen.length > 0 ? flags.listen : (file.listen ?? flags.listen),
  };
  const optional = ['mqttUrl', 'keyring', 'webhookUrl', 'stuckAfter', 'keepEvents', 'keepAudit', 'keepHistory', 'maxPackSize', 'logLevel'] as const;
  for (const k of optional) {
    const v = pick(k, file[k]);
    if (v !== undefined) merged[k] = v;
  }
  const mqttPort = pick('mqttPort', file.mqttPort === undefined ? undefined : String(file.mqttPort));
  if (mqttPort !== undefined) merged.mqttPort = mqttPort;
  return merged;
}
