import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverSamples, stateDigest, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: a viewer token creating or changing something. Every mutating route needs operator or
 * admin; a viewer gets 403 FORBIDDEN before the body is read, nothing changes, and the audit log
 * records the refused attempt (who, what, when).
 */
let s: TestServer;
let viewer: string;
let viewerId: string;
let operator: string;
let packSha: string;
let pack: Buffer;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  pack = await readFile(samples.packs['1.0.0']);
  packSha = createHash('sha256').update(pack).digest('hex');
  expect((await s.api('POST', '/api/v1/packs', { body: pack })).status).toBe(201);
  await s.enroll('p1');
  const v = await s.api<{ token: string; id: string }>('POST', '/api/v1/tokens', { body: { name: 'auditor', role: 'viewer' } });
  viewer = v.body.token;
  viewerId = v.body.id;
  operator = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'ops', role: 'operator' } })).body.token;
  await s.settle();
});
afterAll(() => s.close());

const MUTATIONS: readonly { what: string; method: string; path: () => string; body: () => unknown; viewerOnly?: boolean }[] = [
  { what: 'upload a pack', method: 'POST', path: () => '/api/v1/packs', body: () => pack },
  { what: 'delete a pack', method: 'DELETE', path: () => `/api/v1/packs/${packSha}`, body: () => undefined },
  { what: 'collect packs', method: 'POST', path: () => '/api/v1/packs/gc', body: () => ({ olderThanSeconds: 0 }) },
  { what: 'change a probe channel', method: 'PATCH', path: () => '/api/v1/probes/p1', body: () => ({ channel: 'beta' }) },
  { what: 'send a probe an install command', method: 'POST', path: () => '/api/v1/probes/p1/commands', body: () => ({ type: 'install', packSha256: packSha }) },
  { what: 'enroll a probe', method: 'POST', path: () => '/api/v1/probes/p2/enroll', body: () => ({}) },
  { what: 'create an admin token', method: 'POST', path: () => '/api/v1/tokens', body: () => ({ name: 'me', role: 'admin' }) },
  { what: 'revoke a token', method: 'DELETE', path: () => `/api/v1/tokens/${viewerId}`, body: () => undefined },
  { what: 'point the webhook elsewhere', method: 'PUT', path: () => '/api/v1/settings', body: () => ({ webhookUrl: 'http://127.0.0.1:9/x' }) },
];

describe('a viewer token creating something mutating', () => {
  it.each(MUTATIONS)('is refused with 403 when it tries to $what, and nothing changes', async ({ method, path, body }) => {
    const before = await stateDigest(s.dir);
    const r = await s.api<{ code: string }>(method, path(), { token: viewer, body: body() });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('FORBIDDEN');
    await s.settle();
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('records each refused attempt in the audit log: who, what, when', async () => {
    const entries = await s.api<{ actor: string; actorName: string; action: string; status: number; at: string }[]>('GET', `/api/v1/audit?actor=staff:${viewerId}&limit=100`);
    expect(entries.status).toBe(200);
    expect(entries.body).toHaveLength(MUTATIONS.length);
    for (const e of entries.body) {
      expect(e).toMatchObject({ actor: `staff:${viewerId}`, actorName: 'auditor', status: 403 });
      expect(Date.parse(e.at)).toBeGreaterThan(Date.now() - 120_000);
    }
    expect(entries.body.map((e) => e.action)).toContain('POST /api/v1/packs');
  });

  it('is refused the audit log and the token list too (admin only), while an operator may upload', async () => {
    expect((await s.api('GET', '/api/v1/audit', { token: viewer })).status).toBe(403);
    expect((await s.api('GET', '/api/v1/tokens', { token: viewer })).status).toBe(403);
    expect((await s.api('GET', '/api/v1/probes', { token: viewer })).status).toBe(200);
    expect((await s.api('POST', '/api/v1/packs', { token: operator, body: pack })).status).toBe(201);
    expect((await s.api('POST', '/api/v1/tokens', { token: operator, body: { name: 'x', role: 'viewer' } })).status).toBe(403);
  });
});
