import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverSamples, startTestServer, type TestServer } from './harness.js';

/**
 * HTTP as clients and caches expect it (issue 23): a wrong method is 405 with Allow, a client
 * that holds a pack gets 304, and an error is never cached as the pack.
 */
let s: TestServer;
let sha: string;
let size: number;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const bytes = await readFile(samples.packs['1.0.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  sha = createHash('sha256').update(bytes).digest('hex');
  size = bytes.length;
});
afterAll(() => s.close());

describe('methods', () => {
  it('answers a wrong method on an existing path with 405 and Allow, and an unknown path with 404', async () => {
    const list = await s.api<{ code: string }>('DELETE', '/api/v1/probes');
    expect(list.status).toBe(405);
    expect(list.body.code).toBe('METHOD_NOT_ALLOWED');
    expect(list.headers['allow']).toBe('GET, HEAD, PATCH');
    const pack = await s.api<{ code: string }>('PUT', `/api/v1/packs/${sha}`);
    expect(pack.status).toBe(405);
    expect(pack.headers['allow']).toBe('DELETE, GET, HEAD');
    const withQuery = await s.api('POST', '/api/v1/probes?limit=1');
    expect(withQuery.status).toBe(405);
    const unknown = await s.api<{ code: string }>('GET', '/api/v1/no-such-thing');
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('NOT_FOUND');
    expect(unknown.headers['allow']).toBeUndefined();
  });
});

describe('pack content caching', () => {
  const content = () => `/api/v1/packs/${sha}/content`;

  it('answers If-None-Match with the pack\'s ETag (strong, weak, or *) with 304 and no body', async () => {
    for (const tag of [`"${sha}"`, `W/"${sha}"`, '*', `"other", "${sha}"`]) {
      const r = await s.api('GET', content(), { headers: { 'if-none-match': tag } });
      expect(r.status, tag).toBe(304);
      expect(r.raw.length).toBe(0);
      expect(r.headers['etag']).toBe(`"${sha}"`);
    }
    const other = await s.api('GET', content(), { headers: { 'if-none-match': '"not-this-pack"' } });
    expect(other.status).toBe(200);
    expect(other.raw.length).toBe(size);
    expect(other.headers['cache-control']).toContain('immutable');
  });

  it('never marks a 416 as immutable: a cache must not keep the refusal as the pack', async () => {
    const r = await s.api<{ code: string }>('GET', content(), { headers: { range: `bytes=${size + 10}-` } });
    expect(r.status).toBe(416);
    expect(r.body.code).toBe('RANGE_NOT_SATISFIABLE');
    expect(r.headers['content-range']).toBe(`bytes */${size}`);
    expect(r.headers['cache-control']).toBe('no-store');
  });
});
