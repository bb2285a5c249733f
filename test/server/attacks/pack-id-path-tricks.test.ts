import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, serverSamples, stateDigest, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: path tricks in pack ids. A pack id is a sha256, exactly 64 lower-case hex characters,
 * checked before any path is built from it, so `..`, its encodings, upper case and near-miss
 * lengths never reach the file system. Sent with node:http, which does not normalise the path.
 */
let s: TestServer;
let id: string;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const bytes = await readFile(samples.packs['1.0.0']);
  id = createHash('sha256').update(bytes).digest('hex');
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  // A file the tricks would reach if they worked.
  await writeFile(join(s.dir, 'packs', '..', 'canary.spk'), 'CANARY');
});
afterAll(() => s.close());

const TRICKS: readonly { name: string; make: (id: string) => string }[] = [
  { name: '..', make: () => '..' },
  { name: '%2e%2e', make: () => '%2e%2e' },
  { name: '..%2f..%2fsonde.db', make: () => '..%2f..%2fsonde.db' },
  { name: '%2e%2e%2fcanary', make: () => '%2e%2e%2fcanary' },
  { name: 'an upper-case id', make: (id) => id.toUpperCase() },
  { name: '63 characters', make: (id) => id.slice(0, 63) },
  { name: '65 characters', make: (id) => `${id}0` },
  { name: 'the id and a NUL', make: (id) => `${id}%00` },
  { name: 'the id with .spk', make: (id) => `${id}.spk` },
  { name: 'a backslash path', make: () => '..%5c..%5csonde.db' },
];

describe('path tricks in pack ids', () => {
  it.each(TRICKS)('refuses $name on content, show and delete, and touches nothing', async ({ make }) => {
    const value = make(id);
    const before = await stateDigest(s.dir);
    for (const [method, path] of [
      ['GET', `/api/v1/packs/${value}/content`],
      ['GET', `/api/v1/packs/${value}`],
      ['DELETE', `/api/v1/packs/${value}`],
    ] as const) {
      const r = await api<{ code: string }>(s.url, method, path, { token: s.admin });
      expect(r.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${method} ${path}`).toBeLessThan(500);
      expect(['PACK_ID_INVALID', 'NOT_FOUND', 'PACK_NOT_FOUND']).toContain(r.body.code);
      expect(r.raw.toString()).not.toContain('CANARY');
      expect(r.raw.toString()).not.toContain('SQLite format');
    }
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('refuses the same tricks with 400 PACK_ID_INVALID when they reach the route as one segment', async () => {
    for (const value of ['%2e%2e', id.toUpperCase(), id.slice(0, 63), `${id}0`, '..%2f..%2fsonde.db']) {
      const r = await api<{ code: string }>(s.url, 'GET', `/api/v1/packs/${value}/content`, { token: s.admin });
      expect(r.status, value).toBe(400);
      expect(r.body.code).toBe('PACK_ID_INVALID');
    }
  });

  it('still serves the real id', async () => {
    const r = await api(s.url, 'GET', `/api/v1/packs/${id}/content`, { token: s.admin });
    expect(r.status).toBe(200);
  });
});
