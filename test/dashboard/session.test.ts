import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimFleet } from '../server/rollout-fleet.js';
import { startTestServer, waitFor, type TestServer } from '../server/harness.js';

/**
 * The dashboard's door (issue 22): a staff token for a session cookie, CSRF on every mutating
 * call made with it, roles enforced by the API whatever the page shows, the page and its
 * assets with a Content-Security-Policy, and the live stream. Real server, real HTTP.
 */
let s: TestServer;
let viewer: string;
let operator: string;

async function token(role: 'viewer' | 'operator' | 'admin', name: string = role): Promise<{ id: string; token: string }> {
  const r = await s.api<{ id: string; token: string }>('POST', '/api/v1/tokens', { body: { name, role } });
  expect(r.status).toBe(201);
  return r.body;
}

async function signIn(t: string): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const r = await s.api<{ csrfToken: string }>('POST', '/api/v1/session', { token: null, body: { token: t } });
  expect(r.status).toBe(201);
  const setCookie = ([r.headers['set-cookie']].flat()[0] ?? '') as string;
  return { cookie: setCookie.split(';')[0]!, csrf: r.body.csrfToken, setCookie };
}

beforeAll(async () => {
  s = await startTestServer({ options: { live: { flushMs: 50, heartbeatMs: 300 } } });
  viewer = (await token('viewer')).token;
  operator = (await token('operator')).token;
});
afterAll(async () => {
  await s.close();
});

describe('sign-in', () => {
  it('serves the sign-in page at / as text/html under a strict Content-Security-Policy', async () => {
    const r = await s.api<string>('GET', '/', { token: null });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.body).toContain('id="signin-form"');
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(r.headers['x-frame-options']).toBe('DENY');
    // Nothing is loaded from another origin: every src and href of the page is local.
    for (const m of r.body.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).toMatch(/^\/(?!\/)/);
  });

  it('exchanges a staff token for an HttpOnly, SameSite=Strict session cookie (not Secure on loopback HTTP)', async () => {
    const { setCookie } = await signIn(viewer);
    expect(setCookie).toMatch(/^sonde_session=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/');
    expect(setCookie).not.toContain('Secure');
    expect(setCookie).not.toContain(viewer);
  });

  it('refuses a probe token, an unknown token and a revoked token at sign-in with AUTH_REQUIRED', async () => {
    const creds = await s.enroll('signin-probe');
    for (const t of [creds.token, 'x'.repeat(43)]) {
      const r = await s.api<{ code: string }>('POST', '/api/v1/session', { token: null, body: { token: t } });
      expect([r.status, r.body.code]).toEqual([401, 'AUTH_REQUIRED']);
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    const gone = await token('operator', 'leaver');
    await s.api('DELETE', `/api/v1/tokens/${gone.id}`);
    const r = await s.api<{ code: string }>('POST', '/api/v1/session', { token: null, body: { token: gone.token } });
    expect(r.status).toBe(401);
    const bad = await s.api<{ code: string }>('POST', '/api/v1/session', { token: null, body: { token: viewer, extra: 1 } });
    expect([bad.status, bad.body.code]).toEqual([400, 'BODY_INVALID']);
  });

  it('records each sign-in in the audit log under the token, never its secret', async () => {
    await signIn(operator);
    const audit = await s.api<{ action: string; actorName: string; detail: unknown }[]>('GET', '/api/v1/audit?action=POST%20/api/v1/session');
    expect(audit.body.some((e) => e.actorName === 'operator')).toBe(true);
    expect(JSON.stringify(audit.body)).not.toContain(operator);
  });
});

describe('a session at work', () => {
  it('reads with the cookie alone and tells the page who is signed in', async () => {
    const { cookie, csrf } = await signIn(viewer);
    const me = await s.api<{ name: string; role: string; csrfToken: string }>('GET', '/api/v1/session', { token: null, headers: { cookie } });
    expect(me.body).toMatchObject({ name: 'viewer', role: 'viewer', csrfToken: csrf });
    expect((await s.api('GET', '/api/v1/probes', { token: null, headers: { cookie } })).status).toBe(200);
  });

  it('a forged cross-site request without the CSRF token is refused (CSRF_INVALID) and changes nothing', async () => {
    const { cookie, csrf } = await signIn(operator);
    await s.enroll('csrf-probe');
    const forged = await s.api<{ code: string }>('PATCH', '/api/v1/probes/csrf-probe', { token: null, headers: { cookie }, body: { addTags: ['pwned'] } });
    expect([forged.status, forged.body.code]).toEqual([403, 'CSRF_INVALID']);
    const wrong = await s.api<{ code: string }>('PATCH', '/api/v1/probes/csrf-probe', { token: null, headers: { cookie, 'x-csrf-token': `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }, body: { addTags: ['pwned'] } });
    expect(wrong.status).toBe(403);
    expect((await s.api<{ tags: string[] }>('GET', '/api/v1/probes/csrf-probe')).body.tags).toEqual([]);
    const ok = await s.api<{ tags: string[] }>('PATCH', '/api/v1/probes/csrf-probe', { token: null, headers: { cookie, 'x-csrf-token': csrf }, body: { addTags: ['rack-1'] } });
    expect([ok.status, ok.body.tags]).toEqual([200, ['rack-1']]);
  });

  it("a viewer's session cannot act, whatever the page shows (403 FORBIDDEN)", async () => {
    const { cookie, csrf } = await signIn(viewer);
    const r = await s.api<{ code: string }>('POST', '/api/v1/tokens', { token: null, headers: { cookie, 'x-csrf-token': csrf }, body: { name: 'x', role: 'admin' } });
    expect([r.status, r.body.code]).toEqual([403, 'FORBIDDEN']);
    const p = await s.api<{ code: string }>('PATCH', '/api/v1/probes', { token: null, headers: { cookie, 'x-csrf-token': csrf }, body: { probeIds: ['csrf-probe'], addTags: ['x'] } });
    expect(p.status).toBe(403);
  });

  it('signing out ends the session on the server: the same cookie is refused afterwards', async () => {
    const { cookie, csrf } = await signIn(viewer);
    const out = await s.api('DELETE', '/api/v1/session', { token: null, headers: { cookie, 'x-csrf-token': csrf } });
    expect(out.status).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(/sonde_session=;/);
    expect((await s.api('GET', '/api/v1/probes', { token: null, headers: { cookie } })).status).toBe(401);
  });

  it('revoking the token ends every session opened with it, at once', async () => {
    const t = await token('operator', 'revoked-later');
    const { cookie } = await signIn(t.token);
    expect((await s.api('GET', '/api/v1/session', { token: null, headers: { cookie } })).status).toBe(200);
    await s.api('DELETE', `/api/v1/tokens/${t.id}`);
    expect((await s.api('GET', '/api/v1/session', { token: null, headers: { cookie } })).status).toBe(401);
  });

  it('a bearer token still works beside sessions and needs no CSRF token', async () => {
    await s.enroll('bearer-probe');
    const r = await s.api('PATCH', '/api/v1/probes/bearer-probe', { token: operator, body: { addGroups: ['g1'] } });
    expect(r.status).toBe(200);
  });
});

describe('assets', () => {
  it('serves the script and stylesheet with ETags, answers 304 to a revalidation and 404 to anything else', async () => {
    const js = await s.api<string>('GET', '/assets/main.js', { token: null });
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    const again = await s.api('GET', '/assets/main.js', { token: null, headers: { 'if-none-match': String(js.headers['etag']) } });
    expect(again.status).toBe(304);
    expect((await s.api('GET', '/assets/app.css', { token: null })).headers['content-type']).toMatch(/^text\/css/);
    for (const path of ['/assets/../../package.json', '/assets/%2e%2e/%2e%2e/package.json', '/assets/index.html', '/assets/nope.js', '/assets/api-types.ts']) {
      expect((await s.api('GET', path, { token: null })).status).toBe(404);
    }
  });
});

describe('the live stream', () => {
  function openStream(headers: Record<string, string>): Promise<{ status: number; chunks: string[]; close(): void; ended: Promise<void> }> {
    const u = new URL(s.url);
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: u.hostname, port: u.port, path: '/api/v1/live', headers }, (res) => {
        const chunks: string[] = [];
        const ended = new Promise<void>((r) => res.on('close', () => r()));
        res.on('data', (c: Buffer) => chunks.push(c.toString()));
        resolve({ status: res.statusCode ?? 0, chunks, close: () => req.destroy(), ended });
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('names the probes that changed, within the flush interval, without any polling', async () => {
    const { cookie } = await signIn(viewer);
    const stream = await openStream({ cookie });
    expect(stream.status).toBe(200);
    const fleet = await SimFleet.start(s, ['live-1', 'live-2'], { newVersion: '1.1.0' });
    try {
      await waitFor('a change naming live-1', () => stream.chunks.join('').includes('"live-1"'), 5000);
      const text = stream.chunks.join('');
      expect(text).toContain('event: hello');
      expect(text).toMatch(/event: change\ndata: \{"probes":\[/);
      await s.api('PATCH', '/api/v1/probes', { body: { probeIds: ['live-2'], addTags: ['seen-live'] } });
      await waitFor('a change after the label edit', () => stream.chunks.join('').split('event: change').length > 2, 5000);
    } finally {
      stream.close();
      await fleet.close();
    }
  });

  it('ends with signed-out once the session ends (checked at each heartbeat)', async () => {
    const { cookie, csrf } = await signIn(viewer);
    const stream = await openStream({ cookie });
    await s.api('DELETE', '/api/v1/session', { token: null, headers: { cookie, 'x-csrf-token': csrf } });
    await stream.ended;
    expect(stream.chunks.join('')).toContain('event: signed-out');
  });

  it('refuses a stream without a session or token', async () => {
    expect((await openStream({})).status).toBe(401);
  });

  it('answers HEAD with the headers of a stream and no stream', async () => {
    const r = await s.api('HEAD', '/api/v1/live', { token: viewer });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/event-stream/);
  });
});
