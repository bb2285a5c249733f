import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverSamples, SimProbe, startTestServer, type TestServer } from './harness.js';

/**
 * Tokens and roles, the audit log, and the rule that no secret reaches a log line: a run that
 * creates tokens, enrolls probes, logs in with good and bad tokens, then greps every log line
 * and every audit entry for each secret it handed out or was given.
 */
let s: TestServer;
const secrets: string[] = [];

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  secrets.push(s.admin);
  await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
});
afterAll(() => s.close());

describe('staff tokens', () => {
  it('are 256-bit random values, answered once, listed without their secret, and revocable', async () => {
    const r = await s.api<{ id: string; token: string; role: string }>('POST', '/api/v1/tokens', { body: { name: 'alice', role: 'operator' } });
    expect(r.status).toBe(201);
    expect(Buffer.from(r.body.token, 'base64url')).toHaveLength(32);
    secrets.push(r.body.token);
    const list = await s.api<Record<string, unknown>[]>('GET', '/api/v1/tokens');
    expect(JSON.stringify(list.body)).not.toContain(r.body.token);
    expect(list.body.find((t) => t['id'] === r.body.id)).toMatchObject({ name: 'alice', role: 'operator', kind: 'staff', revokedAt: null });
    expect((await s.api('GET', '/api/v1/probes', { token: r.body.token })).status).toBe(200);
    expect((await s.api('DELETE', `/api/v1/tokens/${r.body.id}`)).status).toBe(204);
    expect((await s.api('GET', '/api/v1/probes', { token: r.body.token })).status).toBe(401);
    expect((await s.api<{ code: string }>('DELETE', `/api/v1/tokens/${r.body.id}`)).body.code).toBe('TOKEN_NOT_FOUND');
  });

  it('refuses a malformed role or an unknown field with 400 BODY_INVALID naming it', async () => {
    const r = await s.api<{ code: string; message: string }>('POST', '/api/v1/tokens', { body: { name: 'x', role: 'root' } });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('BODY_INVALID');
    expect(r.body.message).toMatch(/role/);
    const extra = await s.api<{ message: string }>('POST', '/api/v1/tokens', { body: { name: 'x', role: 'viewer', admin: true } });
    expect(extra.status).toBe(400);
    expect(extra.body.message).toMatch(/admin|unrecognized/i);
    const notJson = await s.api<{ code: string }>('POST', '/api/v1/tokens', { body: Buffer.from('{not json'), headers: { 'content-type': 'application/json' } });
    expect(notJson.status).toBe(400);
    expect(notJson.body.code).toBe('BODY_INVALID');
  });
});

describe('the audit log', () => {
  it('records every mutating call: who, what, on what, when, with what result', async () => {
    const before = Date.now();
    const op = (await s.api<{ token: string; id: string }>('POST', '/api/v1/tokens', { body: { name: 'bob', role: 'operator' } })).body;
    secrets.push(op.token);
    await s.enroll('aud-1');
    await s.api('PATCH', '/api/v1/probes/aud-1', { token: op.token, body: { addTags: ['x'] } });
    const entries = (await s.api<{ actor: string; actorName: string; action: string; target: string | null; status: number; at: string; detail: unknown }[]>('GET', '/api/v1/audit?limit=3')).body;
    expect(entries.map((e) => e.action)).toEqual(['PATCH /api/v1/probes/:id', 'POST /api/v1/probes/:id/enroll', 'POST /api/v1/tokens']);
    expect(entries[0]).toMatchObject({ actor: `staff:${op.id}`, actorName: 'bob', target: 'aud-1', status: 200, detail: { addTags: ['x'] } });
    expect(entries[1]).toMatchObject({ actorName: 'admin', target: 'aud-1', status: 201 });
    expect(entries[2]).toMatchObject({ actorName: 'admin', target: op.id, status: 201, detail: { name: 'bob', role: 'operator' } });
    for (const e of entries) expect(Date.parse(e.at)).toBeGreaterThanOrEqual(before - 1000);
    // Filters and paging.
    const bob = (await s.api<{ actorName: string }[]>('GET', `/api/v1/audit?actor=staff:${op.id}`)).body;
    expect(bob.every((e) => e.actorName === 'bob')).toBe(true);
    const older = (await s.api<unknown[]>('GET', `/api/v1/audit?before=${(entries[2] as unknown as { id: number }).id}&limit=1000`)).body;
    expect(older.length).toBeGreaterThan(0);
  });
});

describe('secrets', () => {
  it('never appear in a log line or an audit entry, whatever was called with them', async () => {
    const creds = await s.enroll('canary-probe');
    secrets.push(creds.token);
    const p = await SimProbe.connect(s.mqttUrl, creds);
    await p.state();
    await p.close();
    // Wrong tokens too: a mistyped secret is still a secret.
    const wrong = 'Wr0ngT0ken-canary-value-000000000000000000';
    secrets.push(wrong);
    await s.api('GET', '/api/v1/probes', { token: wrong });
    await s.api('GET', '/api/v1/probes/canary-probe/next', { token: creds.token });
    await s.api('PUT', '/api/v1/settings', { body: { webhookUrl: 'http://127.0.0.1:9/hook?key=webhook-secret-canary' } });
    secrets.push('webhook-secret-canary');
    await s.settle();
    const audit = JSON.stringify((await s.api('GET', '/api/v1/audit?limit=1000')).body);
    const logs = s.logs.join('\n');
    const db = await readFile(join(s.dir, 'sonde.db'));
    for (const secret of secrets) {
      expect(logs.includes(secret), 'a log line holds a secret').toBe(false);
      expect(audit.includes(secret), 'an audit entry holds a secret').toBe(false);
      if (secret !== 'webhook-secret-canary') expect(db.includes(Buffer.from(secret)), 'the database holds a token').toBe(false);
    }
    expect(s.logs.length).toBeGreaterThan(5);
  });
});
