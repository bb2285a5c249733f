import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnrollmentFile } from '../../../server/src/inventory/probe-service.js';
import { api, probeDigest, serverSamples, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: probe A impersonating probe B over HTTP: polling B's commands with A's token, and
 * fetching the pack a command to B names. Both refused (403), and B's pending command is still
 * B's to take.
 */
let s: TestServer;
let a: EnrollmentFile;
let b: EnrollmentFile;
let packSha: string;
let commandId: string;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const bytes = await readFile(samples.packs.license);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  packSha = createHash('sha256').update(bytes).digest('hex');
  a = await s.enroll('probe-a');
  b = await s.enroll('probe-b');
  commandId = (await s.server.context.commands.send('probe-b', { type: 'install', packSha256: packSha })).commandId;
});
afterAll(() => s.close());

describe('probe A impersonating probe B on HTTP', () => {
  it('gets 403 polling /next for B, and B command stays untaken', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    const r = await api<{ code: string }>(s.url, 'GET', '/api/v1/probes/probe-b/next', { token: a.token });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('FORBIDDEN');
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
    const own = await api<{ commandId: string }>(s.url, 'GET', '/api/v1/probes/probe-b/next', { token: b.token });
    expect(own.status).toBe(200);
    expect(own.body.commandId).toBe(commandId);
  });

  it('gets 403 fetching the pack a command to B names (a licence pack is for B only)', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    for (const headers of [{}, { range: 'bytes=0-' }]) {
      const r = await api<{ code: string }>(s.url, 'GET', `/api/v1/packs/${packSha}/content`, { token: a.token, headers });
      expect(r.status).toBe(403);
      expect(r.raw.length).toBeLessThan(1000);
    }
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
    expect((await api(s.url, 'GET', `/api/v1/packs/${packSha}/content`, { token: b.token })).status).toBe(200);
  });

  it('gets 403 on every staff route with a probe token, and 401 with a token it made up', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/probes'],
      ['GET', '/api/v1/probes/probe-b'],
      ['GET', '/api/v1/packs'],
      ['POST', '/api/v1/probes/probe-b/enroll'],
      ['PATCH', '/api/v1/probes/probe-b'],
    ] as const) {
      const r = await api(s.url, method, path, { token: a.token, ...(method === 'GET' ? {} : { body: {} }) });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
    const forged = await api(s.url, 'GET', '/api/v1/probes/probe-b/next', { token: 'A'.repeat(43) });
    expect(forged.status).toBe(401);
    const staff = await api(s.url, 'GET', '/api/v1/probes/probe-b/next', { token: s.admin });
    expect(staff.status).toBe(403);
  });
});
