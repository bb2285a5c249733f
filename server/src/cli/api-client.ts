import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { SondeError } from '../../../base/src/errors/sonde-error.js';
import { ServerError } from '../errors.js';

/**
 * The staff CLI's HTTP client. The server URL and token come from --server / --token or
 * SONDE_SERVER / SONDE_TOKEN (the environment keeps the token out of `ps`); an https: server is
 * checked against --ca / SONDE_CA, the server CA (ca/ca.crt in its data directory). A refusal is
 * reported with the server's own code.
 */
export interface ApiFlags {
  server?: string;
  token?: string;
  ca?: string;
}

export interface ApiTarget {
  readonly server: string;
  readonly token: string;
  readonly ca?: string;
}

/** An error answer of the server, carrying its code (documented in docs/errors.md). */
export class ApiError extends SondeError<string> {
  override readonly domain = 'server';
  constructor(
    code: string,
    message: string,
    readonly status: number,
  ) {
    super(code, message);
  }
}

export async function resolveTarget(flags: ApiFlags): Promise<ApiTarget> {
  const server = flags.server ?? process.env['SONDE_SERVER'];
  const token = flags.token ?? process.env['SONDE_TOKEN'];
  if (!server) throw new CliError('USAGE', 'no server: give --server URL or set SONDE_SERVER');
  if (!token) throw new CliError('USAGE', 'no token: give --token or set SONDE_TOKEN');
  try {
    const u = new URL(server);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new CliError('USAGE', `not an http(s) URL: ${server}`);
  }
  const caPath = flags.ca ?? process.env['SONDE_CA'];
  let ca: string | undefined;
  if (caPath) {
    try {
      ca = await readFile(caPath, 'utf8');
    } catch (e) {
      throw new CliError('INPUT_UNREADABLE', `cannot read the CA file ${caPath}`, { cause: e });
    }
  }
  return { server: server.replace(/\/+$/, ''), token, ...(ca ? { ca } : {}) };
}

export class ApiClient {
  constructor(private readonly t: ApiTarget) {}

  async json<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; headers: IncomingMessage['headers'] }> {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    return this.send<T>(method, path, payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}, (req) => {
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** Streams a file as the raw request body; `onProgress` after every chunk. */
  async upload<T>(path: string, file: string, onProgress?: (sent: number, total: number) => void): Promise<{ status: number; body: T }> {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      throw new CliError('INPUT_UNREADABLE', `cannot read ${file}`, { cause: e });
    }
    return this.send<T>('POST', path, { 'content-type': 'application/octet-stream', 'content-length': String(size) }, (req) => {
      let sent = 0;
      const src = createReadStream(file, { highWaterMark: 256 * 1024 });
      src.on('data', (c) => {
        sent += c.length;
        onProgress?.(sent, size);
      });
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    });
  }

  /** GET of a binary body (a diagnostics bundle): the bytes, or the server's refusal with its code. */
  async bytes(path: string): Promise<{ body: Buffer; headers: IncomingMessage['headers'] }> {
    const r = await this.send<Buffer>('GET', path, {}, (req) => req.end(), true);
    return { body: r.body, headers: r.headers };
  }

  private send<T>(
    m: string,
    path: string,
    headers: Record<string, string>,
    write: (req: ReturnType<typeof httpRequest>) => void,
    binary = false,
  ): Promise<{ status: number; body: T; headers: IncomingMessage['headers'] }> {
    const url = new URL(path, `${this.t.server}/`);
    const options = { method: m, headers: { ...headers, authorization: `Bearer ${this.t.token}`, accept: binary ? '*/*' : 'application/json' }, ...(this.t.ca ? { ca: this.t.ca } : {}) };
    return new Promise((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (binary && status < 400) {
            resolve({ status, body: Buffer.concat(chunks) as T, headers: res.headers });
            return;
          }
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = null;
          if (text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              reject(new ServerError('SERVER_RESPONSE_INVALID', `${m} ${url.pathname}: HTTP ${status} without a JSON body`));
              return;
            }
          }
          if (status >= 400) {
            const e = parsed as { code?: unknown; message?: unknown } | null;
            if (typeof e?.code !== 'string' || !/^[A-Z][A-Z0-9_]+$/.test(e.code)) {
              reject(new ServerError('SERVER_RESPONSE_INVALID', `${m} ${url.pathname}: HTTP ${status} without an error code`));
              return;
            }
            reject(new ApiError(e.code, typeof e.message === 'string' ? e.message : `HTTP ${status}`, status));
            return;
          }
          resolve({ status, body: parsed as T, headers: res.headers });
        });
      });
      req.on('error', (e) => reject(new ServerError('SERVER_UNREACHABLE', `cannot reach ${url.origin}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { cause: e })));
      write(req);
    });
  }
}
