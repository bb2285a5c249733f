import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverSamples, stateDigest, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: an oversize body. JSON bodies stop at 64 KiB and packs at --max-pack-size (1 MiB here),
 * whether the size is declared (refused before a byte is read) or the body is streamed without a
 * length (refused as it crosses the limit). 413 BODY_TOO_LARGE; nothing is kept, not even a temp file.
 */
let s: TestServer;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert, options: { maxPackBytes: 1024 * 1024 } });
  await s.enroll('p1');
});
afterAll(() => s.close());

/** Streams `total` bytes in chunks without a Content-Length (chunked), as a client that lies would. */
function streamed(path: string, total: number, contentType: string): Promise<{ status: number; body: string }> {
  const u = new URL(s.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'POST', headers: { authorization: `Bearer ${s.admin}`, 'content-type': contentType } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    req.on('response', () => undefined);
    pump();
  });
}

describe('an oversize body', () => {
  it('is refused as JSON past 64 KiB (413), and the probe keeps its tags', async () => {
    const before = await stateDigest(s.dir);
    const tags = Array.from({ length: 3000 }, (_, i) => `tag-${i}-${'x'.repeat(20)}`);
    const r = await s.api<{ code: string }>('PATCH', '/api/v1/probes/p1', { body: { addTags: tags } });
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('BODY_TOO_LARGE');
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('is refused as a pack whose declared length is over the limit, before anything is read', async () => {
    const before = await stateDigest(s.dir);
    const r = await s.api<{ code: string }>('POST', '/api/v1/packs', { body: Buffer.alloc(1024 * 1024 + 1, 1) });
    expect(r.status).toBe(413);
    expect(r.body.code).toBe('BODY_TOO_LARGE');
    expect(r.headers['connection']).toBe('close');
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('is refused as a pack streamed without a length once it crosses the limit, leaving no temp file', async () => {
    const before = await stateDigest(s.dir);
    const r = await streamed('/api/v1/packs', 3 * 1024 * 1024, 'application/octet-stream');
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).code).toBe('BODY_TOO_LARGE');
    await new Promise((res) => setTimeout(res, 100));
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('is refused as streamed JSON past 64 KiB', async () => {
    const before = await stateDigest(s.dir);
    const r = await streamed('/api/v1/tokens', 256 * 1024, 'application/json');
    expect(r.status).toBe(413);
    expect(await stateDigest(s.dir)).toEqual(before);
  });
});
