import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP(S) server on 127.0.0.1 that serves one generated file with Range support, and
 * misbehaves on demand the ways a customer network and a broken server do: connections cut
 * mid-body, stalls, 503s, Range ignored, a lying Content-Range, wrong bytes, too many bytes, a
 * bearer token required. Every request is recorded with its Range header and what was sent.
 */
export interface Misbehaviour {
  /** The next `times` requests: send `afterBytes` body bytes, then destroy the socket. */
  cut?: { afterBytes: number; times: number };
  /** The next `times` requests: send `afterBytes` body bytes, then go silent, socket open. */
  stall?: { afterBytes: number; times: number };
  /** Answer this many of the next requests with 503 (Infinity: all of them). */
  unavailable?: number;
  /** Answer every request with the whole file, 200, whatever its Range asks. */
  ignoreRange?: boolean;
  /** Label 206 answers with a Content-Range whose start is off by this many bytes. */
  contentRangeSkew?: number;
  /** Serve the file with this byte flipped. */
  corruptAt?: number;
  /** Append this many bytes to the file; `declared` says whether Content-Length admits it. */
  extra?: { bytes: number; declared: boolean };
  /** Require `Authorization: Bearer <token>`: 401 without one, 403 with another. */
  token?: string;
  /** Send the body `bytes` at a time, `everyMs` apart (a slow link). */
  throttle?: { bytes: number; everyMs: number };
}

export interface RecordedRequest {
  readonly range: string | undefined;
  readonly authorization: string | undefined;
  status: number;
  /** Body bytes written to the socket. */
  bytesSent: number;
  /** The whole body was handed to the socket. */
  completed: boolean;
}

export interface FlakyServer {
  readonly url: string;
  readonly body: Buffer;
  readonly sha256: string;
  readonly requests: RecordedRequest[];
  /** TLS handshakes the server saw fail (a client that refused its certificate). */
  readonly tlsFailures: number;
  /**
   * Called as each request arrives, before the server decides how to answer: a test can look at
   * the client's state at that moment, or change the misbehaviour for this request on.
   */
  onRequest: ((rec: RecordedRequest, index: number) => void) | undefined;
  /** Replaces the misbehaviour; its counters start again from the next request. */
  set(m: Misbehaviour): void;
  close(): Promise<void>;
}

export interface FlakyServerOptions {
  /** Size of the generated file; default 4 MiB. */
  size?: number;
  misbehave?: Misbehaviour;
  /** Serve HTTPS with this certificate. */
  tls?: { key: string; cert: string };
}

const CHUNK = 64 * 1024;

export async function startFlakyServer(opts: FlakyServerOptions = {}): Promise<FlakyServer> {
  const body = randomBytes(opts.size ?? 4 * 1024 * 1024);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const requests: RecordedRequest[] = [];
  let m: Misbehaviour = {};
  let counts = { cut: 0, stall: 0, unavailable: 0 };
  let tlsFailures = 0;

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const rec: RecordedRequest = { range: req.headers.range, authorization: req.headers.authorization, status: 0, bytesSent: 0, completed: false };
    requests.push(rec);
    self.onRequest?.(rec, requests.length - 1);
    const answer = (status: number, headers: Record<string, string | number> = {}): void => {
      rec.status = status;
      res.writeHead(status, headers).end();
    };

    if (m.token !== undefined) {
      const auth = req.headers.authorization;
      if (auth === undefined) return answer(401, { 'www-authenticate': 'Bearer' });
      if (auth !== `Bearer ${m.token}`) return answer(403);
    }
    if (m.unavailable !== undefined && counts.unavailable < m.unavailable) {
      counts.unavailable++;
      return answer(503, { 'retry-after': 1 });
    }

    let file = body;
    if (m.corruptAt !== undefined) {
      file = Buffer.from(body);
      file[m.corruptAt] = file[m.corruptAt]! ^ 0xff;
    }
    if (m.extra) file = Buffer.concat([file, Buffer.alloc(m.extra.bytes, 0x5a)]);

    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    let status = 200;
    if (range && !m.ignoreRange) {
      start = Number(range[1]);
      if (start >= file.length) return answer(416, { 'content-range': `bytes */${file.length}` });
      status = 206;
      const label = start + (m.contentRangeSkew ?? 0);
      headers['content-range'] = `bytes ${label}-${label + file.length - start - 1}/${file.length}`;
    }
    const slice = file.subarray(start);
    // Without a Content-Length the body is chunked, so a client cannot tell an overrun from the
    // headers: it has to count.
    if (!m.extra || m.extra.declared) headers['content-length'] = slice.length;

    let limit = slice.length;
    let after: 'cut' | 'stall' | undefined;
    if (m.cut && counts.cut < m.cut.times) {
      counts.cut++;
      limit = Math.min(limit, m.cut.afterBytes);
      after = 'cut';
    } else if (m.stall && counts.stall < m.stall.times) {
      counts.stall++;
      limit = Math.min(limit, m.stall.afterBytes);
      after = 'stall';
    }
    rec.status = status;
    res.writeHead(status, headers);
    void send(res, slice.subarray(0, limit), rec, m.throttle).then((whole) => {
      if (!whole) return;
      if (after === 'cut') {
        // The bytes are in the kernel by now (write callbacks ran): the client receives exactly
        // `limit` bytes and then the end of the connection, mid-body.
        res.socket?.destroy();
      } else if (after === undefined) {
        rec.completed = true;
        res.end();
      }
      // 'stall': keep the socket open and silent until the client gives up.
    });
  };

  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  server.on('tlsClientError', () => tlsFailures++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const self: FlakyServer = {
    onRequest: undefined,
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/api/v1/packs/${sha256}/content`,
    body,
    sha256,
    requests,
    get tlsFailures() {
      return tlsFailures;
    },
    set(next) {
      m = next;
      counts = { cut: 0, stall: 0, unavailable: 0 };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return self;
}

/** Writes `bytes` in chunks, honouring backpressure; false when the client went away first. */
async function send(res: ServerResponse, bytes: Buffer, rec: RecordedRequest, throttle?: { bytes: number; everyMs: number }): Promise<boolean> {
  const step = throttle?.bytes ?? CHUNK;
  for (let at = 0; at < bytes.length; at += step) {
    if (throttle && at > 0) await new Promise((r) => setTimeout(r, throttle.everyMs));
    const chunk = bytes.subarray(at, at + step);
    const ok = await new Promise<boolean>((resolve) => {
      if (res.destroyed) return resolve(false);
      const onClose = (): void => resolve(false);
      res.once('close', onClose);
      res.write(chunk, (err) => {
        res.off('close', onClose);
        resolve(!err);
      });
    });
    if (!ok) return false;
    rec.bytesSent += chunk.length;
  }
  return true;
}
