import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnrollmentFile } from '../../../server/src/inventory/probe-service.js';
import { probeDigest, SimProbe, startTestServer, waitFor, type TestServer } from '../harness.js';

/**
 * Attack: probe A impersonating probe B over MQTT (embedded broker). A may publish only to its own
 * state and events topics; a login as B needs B's token and B's client id. Each attempt is refused
 * and B's record stays exactly as it was.
 */
let s: TestServer;
let a: EnrollmentFile;
let b: EnrollmentFile;
let victim: SimProbe;

beforeAll(async () => {
  s = await startTestServer();
  a = await s.enroll('probe-a');
  b = await s.enroll('probe-b');
  victim = await SimProbe.connect(s.mqttUrl, b);
  await victim.state({ version: '1.0.0', health: 'ok' });
  await s.settle();
});
afterAll(async () => {
  await victim.close();
  await s.close();
});

describe('probe A impersonating probe B on MQTT', () => {
  it('is disconnected when it publishes a state on B topic, and B is untouched', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    const attacker = await SimProbe.connect(s.mqttUrl, a);
    const closed = new Promise<void>((r) => attacker.client.once('close', () => r()));
    attacker.client.publish('sonde/v1/probes/probe-b/state', JSON.stringify(victim.stateOf({ version: '6.6.6', health: 'down' })), { qos: 1 });
    await closed;
    await s.settle(200);
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
    await attacker.close();
  });

  it('is disconnected when it publishes a forged outcome on B events topic, and B is untouched', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    const attacker = await SimProbe.connect(s.mqttUrl, a);
    const closed = new Promise<void>((r) => attacker.client.once('close', () => r()));
    attacker.client.publish('sonde/v1/probes/probe-b/events', JSON.stringify(victim.eventOf('install-outcome', { deploymentId: 'd-x', outcome: 'committed', version: '6.6.6' })), { qos: 1 });
    await closed;
    await s.settle(200);
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
    await attacker.close();
  });

  it('has a state naming B on its own topic dropped (MESSAGE_PROBE_MISMATCH)', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    const attacker = await SimProbe.connect(s.mqttUrl, a);
    await attacker.client.publishAsync('sonde/v1/probes/probe-a/state', JSON.stringify(victim.stateOf({ version: '6.6.6' })), { qos: 1 });
    await attacker.client.publishAsync('sonde/v1/probes/probe-a/events', JSON.stringify(victim.eventOf('offline')), { qos: 1 });
    await s.settle(200);
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
    expect(s.logs.some((l) => l.includes('MESSAGE_PROBE_MISMATCH'))).toBe(true);
    await attacker.close();
  });

  it('cannot log in as B with its own token, nor take B client id under its own name', async () => {
    const before = probeDigest(s.dir, 'probe-b');
    await expect(
      mqtt.connectAsync(s.mqttUrl, { clientId: 'probe-b', username: 'probe-b', password: a.token, reconnectPeriod: 0, connectTimeout: 3000 }, false),
    ).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(
      mqtt.connectAsync(s.mqttUrl, { clientId: 'probe-b', username: 'probe-a', password: a.token, reconnectPeriod: 0, connectTimeout: 3000 }, false),
    ).rejects.toThrow(/Not authorized|Identifier rejected/i);
    // B's own session was never taken over.
    await new Promise((r) => setTimeout(r, 200));
    expect(victim.client.connected).toBe(true);
    await s.settle();
    expect(probeDigest(s.dir, 'probe-b')).toEqual(before);
  });

  it('cannot log in with a token revoked by re-enrollment', async () => {
    const old = a.token;
    a = await s.enroll('probe-a');
    await expect(mqtt.connectAsync(s.mqttUrl, { clientId: 'probe-a', username: 'probe-a', password: old, reconnectPeriod: 0, connectTimeout: 3000 }, false)).rejects.toThrow();
    const fresh = await SimProbe.connect(s.mqttUrl, a);
    await waitFor('connected', () => fresh.client.connected);
    await fresh.close();
  });
});
