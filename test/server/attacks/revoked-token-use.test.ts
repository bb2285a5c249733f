import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, stateDigest, type TestServer } from '../harness.js';

/**
 * Attack: a staff token that was stolen and then revoked (a retired laptop, a departed operator),
 * or a guessed one, used against the API or the dashboard's sign-in. Each is refused with 401
 * before any work and changes nothing, and each refusal is in the server's log with the caller's
 * address and which credential it presented, so the vendor sees that the old token is still tried.
 * No credential at all (a dashboard page before sign-in) is refused without a log line.
 */
let s: TestServer;
let stolen: string;

beforeAll(async () => {
  s = await startTestServer();
  const t = await s.api<{ token: string; id: string }>('POST', '/api/v1/tokens', { body: { name: 'laptop-of-bob', role: 'operator' } });
  stolen = t.body.token;
  expect((await s.api('DELETE', `/api/v1/tokens/${t.body.id}`)).status).toBe(204);
  await s.settle();
});
afterAll(() => s.close());

interface Refusal {
  msg: string;
  ip: string;
  method: string;
  route: string;
  credential: string;
  level: number;
}

const refusals = (): Refusal[] =>
  s.logs
    .map((l) => JSON.parse(l) as Partial<Refusal>)
    .filter((l): l is Refusal => typeof l.msg === 'string' && l.msg.startsWith('refused a '));

describe('a revoked or guessed staff token', () => {
  it('is refused by the API (401) and leaves everything as it was, and the refusal is logged with the caller address', async () => {
    const before = await stateDigest(s.dir);
    const n = refusals().length;
    const r = await s.api<{ code: string }>('POST', '/api/v1/tokens', { token: stolen, body: { name: 'backdoor', role: 'admin' } });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('AUTH_REQUIRED');
    await s.settle();
    expect(await stateDigest(s.dir)).toEqual(before);
    const logged = refusals().slice(n);
    expect(logged).toEqual([expect.objectContaining({ ip: '127.0.0.1', method: 'POST', route: '/api/v1/tokens', credential: 'bearer token', level: 40 })]);
    // The secret itself never reaches the log.
    expect(s.logs.some((l) => l.includes(stolen))).toBe(false);
  });

  it('is refused at the dashboard sign-in (401), and that is logged too', async () => {
    const n = refusals().length;
    const guessed = 'A'.repeat(43);
    for (const token of [stolen, guessed]) {
      const r = await s.api<{ code: string }>('POST', '/api/v1/session', { token: null, body: { token } });
      expect(r.status).toBe(401);
      expect(r.body.code).toBe('AUTH_REQUIRED');
    }
    expect(refusals().slice(n).map((l) => [l.route, l.credential])).toEqual([
      ['/api/v1/session', 'sign-in token'],
      ['/api/v1/session', 'sign-in token'],
    ]);
  });

  it('a session cookie that is not one is logged; a request with no credential is refused without a line', async () => {
    const n = refusals().length;
    expect((await s.api('GET', '/api/v1/probes', { token: null, headers: { cookie: 'sonde_session=forged' } })).status).toBe(401);
    expect((await s.api('GET', '/api/v1/probes', { token: null })).status).toBe(401);
    expect(refusals().slice(n).map((l) => l.credential)).toEqual(['session cookie']);
  });
});
