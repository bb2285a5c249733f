import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

describe('smoke', () => {
  it('works', async () => {
    const creds = await s.enroll('p1');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    await p.state({ version: '1.2.3' });
    await s.settle();
    const r = await s.api<{ id: string; version: string; online: boolean }[]>('GET', '/api/v1/probes');
    expect(r.status).toBe(200);
    expect(r.body[0]).toMatchObject({ id: 'p1', version: '1.2.3', online: true });
    p.drop();
    await waitFor('offline', async () => (await s.api<{ online: boolean }[]>('GET', '/api/v1/probes')).body[0]?.online === false);
    const o = await s.api('GET', '/api/v1/openapi.json', { token: null });
    expect(o.status).toBe(200);
    const m = await s.api('GET', '/metrics', { token: null });
    expect(m.status).toBe(200);
    console.log(String(m.body).slice(0, 3000));
  });
});
