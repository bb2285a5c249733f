import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandSchema } from '../../base/src/protocol/messages.js';
import { createBody } from '../../server/src/cli/rollout-actions.js';
import { SimProbe, waitFor, type TestServer } from './harness.js';
import { startRolloutServer } from './rollout-fleet.js';

/**
 * A rollout's limits on its downloads (issue 24): a bandwidth cap and a window of local time, set
 * on the rollout, carried by every install command it sends (the probe applies the stricter of the
 * rollout's and its own: download-pace.test.ts), shown in its status, refused when malformed.
 */
let s: TestServer;
let pack: { sha256: string };

beforeAll(async () => {
  const started = await startRolloutServer();
  s = started.s;
  pack = started.packs['1.1.0']!;
});
afterAll(async () => {
  await s?.close();
});

describe('download limits on a rollout', () => {
  it('are kept with the rollout and carried by each install command it sends', async () => {
    const creds = await s.enroll('dl-1');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      await p.state({ version: '1.0.0' });
      await s.settle();
      const download = { maxBytesPerSecond: 65_536, window: { start: '01:00', end: '05:00', timeZone: 'Europe/Paris' } };
      const r = await s.api<{ id: string; download: unknown }>('POST', '/api/v1/rollouts', { body: { packSha256: pack.sha256, target: { probeIds: ['dl-1'] }, download } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.download).toEqual(download);
      const cmd = await waitFor('the install command', () => p.commands.find((c) => c.type === 'install'));
      expect(commandSchema.parse(cmd)).toMatchObject({ type: 'install', download });
      expect((await s.api<{ download: unknown }>('GET', `/api/v1/rollouts/${r.body.id}`)).body.download).toEqual(download);
    } finally {
      await p.close();
    }
  });

  it('a rollout without limits sends commands without them', async () => {
    const creds = await s.enroll('dl-2');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      await p.state({ version: '1.0.0' });
      await s.settle();
      const r = await s.api<{ id: string; download: unknown }>('POST', '/api/v1/rollouts', { body: { packSha256: pack.sha256, target: { probeIds: ['dl-2'] } } });
      expect(r.body.download).toBeNull();
      const cmd = await waitFor('the install command', () => p.commands.find((c) => c.type === 'install'));
      expect('download' in cmd).toBe(false);
    } finally {
      await p.close();
    }
  });

  it('refuses an unknown time zone or a cap below 1 KiB/s, creating nothing', async () => {
    const before = (await s.api<unknown[]>('GET', '/api/v1/rollouts')).body.length;
    for (const download of [{ window: { start: '01:00', end: '05:00', timeZone: 'Europe/Atlantis' } }, { maxBytesPerSecond: 100 }]) {
      const r = await s.api<{ code: string; message: string }>('POST', '/api/v1/rollouts', { body: { packSha256: pack.sha256, target: { channel: 'stable' }, download } });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('BODY_INVALID');
      expect(r.body.message).toMatch(/download/);
    }
    expect((await s.api<unknown[]>('GET', '/api/v1/rollouts')).body).toHaveLength(before);
  });

  it('sonde rollout create --download-cap 64k --download-window 01:00-05:00@Europe/Paris writes them', () => {
    const body = createBody({ pack: 'ab'.repeat(32), channel: 'stable', downloadCap: '64k', downloadWindow: '01:00-05:00@Europe/Paris' } as Parameters<typeof createBody>[0]);
    expect(body['download']).toEqual({ maxBytesPerSecond: 65_536, window: { start: '01:00', end: '05:00', timeZone: 'Europe/Paris' } });
    expect(() => createBody({ pack: 'ab'.repeat(32), channel: 'stable', downloadWindow: '1-5' } as Parameters<typeof createBody>[0])).toThrow(/HH:MM-HH:MM@Zone/);
  });
});
