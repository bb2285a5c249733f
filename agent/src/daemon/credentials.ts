import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { parseSecretJson } from '../../../base/src/fs/secret-json.js';
import { LinkError } from '../link/errors.js';
import { PROBE_ID } from '../../../base/src/protocol/topics.js';

/**
 * The probe's enrollment credentials (written by `sonde server enroll PROBE_ID`): its id, its
 * token, where the server is, and the server CA to pin when the link leaves loopback. Read from a
 * file that must be mode 0600 and owned by us. The token never appears in a log or an error.
 */
const schema = z
  .object({
    format: z.literal('sonde-enrollment-1'),
    probeId: z.string().regex(PROBE_ID),
    token: z.string().regex(/^[A-Za-z0-9_-]{32,128}$/),
    server: z.object({ http: z.string().url(), mqtt: z.string().url() }).strict(),
    /** The server CA (PEM); required for https: and mqtts: URLs. */
    ca: z.string().optional(),
  })
  .strict();

export type Credentials = Readonly<z.infer<typeof schema>>;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname;
  return LOOPBACK.has(host) || host.startsWith('127.');
}

export async function loadCredentials(path: string): Promise<Credentials> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new LinkError('CREDENTIALS_INVALID', `credential file ${path} cannot be read`, { cause: e });
  }
  if ((info.mode & 0o077) !== 0) {
    throw new LinkError('CREDENTIALS_INVALID', `credential file ${path} must be mode 0600 (it is ${(info.mode & 0o777).toString(8)})`);
  }
  // Never echo the file: it holds the token. A syntax error names the line; a schema error the keys.
  let json: unknown;
  try {
    json = parseSecretJson(await readFile(path, 'utf8'), path);
  } catch (e) {
    throw new LinkError('CREDENTIALS_INVALID', `credential file ${(e as Error).message}`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new LinkError('CREDENTIALS_INVALID', `credential file ${path} is malformed (${r.error.issues.map((i) => i.path.join('.') || '(root)').join(', ')})`);
  const parsed = r.data;
  for (const url of [parsed.server.http, parsed.server.mqtt]) {
    const u = new URL(url);
    if (!isLoopbackUrl(url) && u.protocol !== 'https:' && u.protocol !== 'mqtts:') {
      throw new LinkError('CREDENTIALS_INVALID', `${u.protocol}//${u.host} is off loopback: the link must use https: and mqtts:`);
    }
    if ((u.protocol === 'https:' || u.protocol === 'mqtts:') && !parsed.ca) {
      throw new LinkError('CREDENTIALS_INVALID', 'a TLS link needs the server CA in the credential file (ca)');
    }
  }
  if (parsed.ca) {
    try {
      new X509Certificate(parsed.ca);
    } catch (e) {
      throw new LinkError('CREDENTIALS_INVALID', 'the server CA in the credential file does not parse', { cause: e });
    }
  }
  return Object.freeze(parsed);
}
