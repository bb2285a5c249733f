import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventSchema } from '../../base/src/protocol/messages.js';
import { topics } from '../../base/src/protocol/topics.js';
import { SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

/**
 * Liveness without periodic state (issue 24, docs/traffic.md): an idle probe's keepalive moves its
 * last seen, and a probe that goes silent without a goodbye is marked offline by its last will
 * once the broker has heard nothing for 1.5 keepalives.
 */
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ options: { seenFlushMs: 200 } });
});
afterAll(() => s.close());

interface Probe {
  online: boolean;
  lastSeen: string | null;
}

describe('liveness from the MQTT session', () => {
  it('an idle probe that only sends keepalives is seen: its last seen moves without a message', async () => {
    const creds = await s.enroll('live-1');
    const p = await SimProbe.connect(s.mqttUrl, creds, { keepalive: 1 });
    try {
      await p.event('online', { id: `online-${randomBytes(4).toString('hex')}` });
      await s.settle();
      const first = (await s.api<Probe & { events: unknown[] }>('GET', '/api/v1/probes/live-1')).body;
      expect(first.online).toBe(true);
      const afterPings = await waitFor('last seen moved by keepalives', async () => {
        const now = (await s.api<Probe>('GET', '/api/v1/probes/live-1')).body;
        return now.lastSeen !== null && Date.parse(now.lastSeen) >= Date.parse(first.lastSeen!) + 1500 ? now : null;
      }, 8000);
      expect(afterPings.online).toBe(true);
      // Nothing but keepalives in between: no event, no state.
      const later = (await s.api<{ events: unknown[]; stateAt: string | null }>('GET', '/api/v1/probes/live-1')).body;
      expect(later.events).toHaveLength(first.events.length);
      expect(later.stateAt).toBeNull();
    } finally {
      await p.close();
    }
  });

  it('a probe that goes silent (no goodbye, no keepalive) is marked offline within 1.5 keepalives', async () => {
    const creds = await s.enroll('live-2');
    const url = new URL(s.mqttUrl);
    const conn = randomBytes(4).toString('hex');
    const event = (type: 'online' | 'offline', id: string) =>
      JSON.stringify(eventSchema.parse({ v: 1, id, seq: 0, probeId: 'live-2', at: new Date().toISOString(), type, ...(type === 'offline' ? { message: 'lost without a goodbye' } : {}) }));
    const keepalive = 2;
    // A raw client: CONNECT with a last will, one `online` event, then nothing at all, as a probe
    // whose link died silently (its pings never arrive).
    const socket = connect(Number(url.port), url.hostname);
    const connacked = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(
      generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: 'live-2',
        keepalive,
        username: 'live-2',
        password: Buffer.from(creds.token),
        will: { topic: topics.events('live-2'), payload: Buffer.from(event('offline', `offline-${conn}`)), qos: 1, retain: false },
      }),
    );
    await connacked;
    socket.write(generate({ cmd: 'publish', topic: topics.events('live-2'), payload: Buffer.from(event('online', `online-${conn}`)), qos: 0, retain: false, dup: false }));
    await waitFor('online', async () => (await s.api<Probe>('GET', '/api/v1/probes/live-2')).body.online);
    const silentFrom = Date.now();
    await waitFor('offline', async () => !(await s.api<Probe>('GET', '/api/v1/probes/live-2')).body.online, 10_000);
    const took = Date.now() - silentFrom;
    socket.destroy();
    // aedes closes a client silent for 1.5 keepalives; the will is then ingested (tens of ms).
    expect(took).toBeGreaterThanOrEqual(keepalive * 1000);
    expect(took).toBeLessThan(keepalive * 1500 + 1500);
  });
});
