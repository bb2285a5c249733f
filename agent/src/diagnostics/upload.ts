import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http, { type IncomingMessage, type RequestOptions } from 'node:http';
import https from 'node:https';
import { backoffDelay, sleep, type BackoffWindow } from '../link/backoff.js';
import { DiagnosticsError } from './errors.js';

/**
 * Uploads a diagnostics bundle to the server (docs/http-api.md, "Diagnostics"), resumably: a HEAD
 * asks how many bytes the server already holds (`Upload-Offset`), and a PUT sends the rest with
 * `Content-Range: bytes FROM-LAST/TOTAL` and the whole bundle's `X-Sonde-Sha256`. A cut
 * connection costs a retry from where the server stopped, not the whole bundle. The server checks
 * the sha256 over all the bytes it holds before it keeps the bundle.
 */
export interface UploadOptions {
  readonly url: string;
  readonly file: string;
  readonly token: string;
  readonly ca?: string;
  readonly attempts?: number;
  readonly backoff?: BackoffWindow;
  readonly signal?: AbortSignal;
}

const TIMEOUT_MS = 30_000;

export async function uploadBundle(o: UploadOptions): Promise<{ bytes: number; sha256: string; attempts: number }> {
  const body = await readFile(o.file);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const url = new URL(o.url);
  const attempts = o.attempts ?? 5;
  let last: Error | null = null;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const head = await request(url, o, 'HEAD', {});
      const held = head.status === 200 ? Number(head.headers['upload-offset'] ?? 0) : 0;
      if (head.status !== 200 && head.status !== 404) throw new Final(refused(head));
      const from = Number.isSafeInteger(held) && held >= 0 && held <= body.length ? held : 0;
      if (from === body.length && head.headers['x-sonde-complete'] === 'true') return { bytes: body.length, sha256, attempts: attempt };
      const chunk = body.subarray(from);
      const put = await request(
        url,
        o,
        'PUT',
        {
          'content-type': 'application/gzip',
          'content-length': String(chunk.length),
          'content-range': `bytes ${from}-${body.length - 1}/${body.length}`,
          'x-sonde-sha256': sha256,
        },
        chunk,
      );
      if (put.status === 200 || put.status === 201) return { bytes: body.length, sha256, attempts: attempt };
      // 4xx other than a range the server no longer agrees with: retrying will not help.
      if (put.status >= 400 && put.status < 500 && put.status !== 409 && put.status !== 416) throw new Final(refused(put));
      last = refused(put);
    } catch (e) {
      if (e instanceof Final) throw e.error;
      last = e as Error;
    }
    if (attempt < attempts) await sleep(backoffDelay(attempt, o.backoff ?? { minDelayMs: 500, maxDelayMs: 10_000 }), o.signal);
  }
  throw new DiagnosticsError('DIAGNOSTICS_UPLOAD_FAILED', `the diagnostics bundle did not reach ${url.origin} after ${attempts} attempts: ${last?.message ?? 'unknown'}`);
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly text: string;
}

function refused(a: Answer): DiagnosticsError {
  let detail = a.text.slice(0, 300);
  try {
    const j = JSON.parse(a.text) as { code?: string; message?: string };
    if (j.code) detail = `${j.code}: ${j.message ?? ''}`;
  } catch {
    // not JSON: the text as it came
  }
  return new DiagnosticsError('DIAGNOSTICS_UPLOAD_FAILED', `the server answered ${a.status} to the diagnostics upload (${detail})`);
}

/** A refusal no retry can change (a 4xx other than a range conflict). */
class Final extends Error {
  constructor(readonly error: DiagnosticsError) {
    super(error.message);
  }
}

function request(url: URL, o: UploadOptions, method: string, headers: Record<string, string>, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options: RequestOptions = { method, headers: { ...headers, authorization: `Bearer ${o.token}` }, timeout: TIMEOUT_MS, ...(o.signal ? { signal: o.signal } : {}) };
    const req = url.protocol === 'https:' ? https.request(url, { ...options, ...(o.ca !== undefined ? { ca: o.ca } : {}) }) : http.request(url, options);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.length < 64 && parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.end(body);
  });
}
