import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimProbe, startTestServer, tempDir, waitFor, type TestServer } from '../harness.js';
import { startMosquitto, type Mosquitto } from '../mosquitto-harness.js';

/**
 * Attack: probe A reading probe B's commands. The embedded broker refuses the subscription
 * (SUBACK failure); Mosquitto grants it but never delivers anything on it (its `%u` read ACL
 * filters each message). Either way A receives nothing meant for B.
 */
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function attempt(s: TestServer, url: string, reload: () => Promise<void>): Promise<{ granted: number[]; received: string[]; victimGot: boolean }> {
  const a = await s.enroll('probe-a');
  const b = await s.enroll('probe-b');
  await reload();
  const attacker = await SimProbe.connect(url, a);
  const victim = await SimProbe.connect(url, b);
  try {
    const received: string[] = [];
    attacker.client.on('message', (topic) => received.push(topic));
    const granted: number[] = [];
    for (const filter of ['sonde/v1/probes/probe-b/commands', 'sonde/v1/probes/+/commands', 'sonde/v1/#', '#']) {
      try {
        const g = await attacker.client.subscribeAsync(filter, { qos: 1 });
        granted.push(g[0]?.qos ?? -1);
      } catch {
        granted.push(128); // mqtt.js rejects a SUBACK failure
      }
    }
    const c = await s.server.context.commands.send('probe-b', { type: 'report-now' });
    const victimGot = await waitFor('the victim', () => victim.commands.some((x) => x.commandId === c.commandId)).then(() => true);
    await new Promise((r) => setTimeout(r, 300));
    return { granted, received: received.filter((t) => t !== 'sonde/v1/probes/probe-a/commands'), victimGot };
  } finally {
    await attacker.close();
    await victim.close();
  }
}

describe('probe A reading probe B commands', () => {
  it('is refused the subscription by the embedded broker and receives nothing', async () => {
    const s = await startTestServer();
    cleanups.push(() => s.close());
    const r = await attempt(s, s.mqttUrl, async () => undefined);
    expect(r.granted).toEqual([128, 128, 128, 128]);
    expect(r.received).toEqual([]);
    expect(r.victimGot).toBe(true);
  });

  it('is granted the subscription by Mosquitto but never gets a message on it', async () => {
    const root = await tempDir('sonde-eavesdrop-');
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'data'));
    const broker: Mosquitto = await startMosquitto(join(root, 'data'));
    cleanups.push(() => broker.close());
    const s = await startTestServer({ dataDir: join(root, 'data'), options: { mqttUrl: broker.url } });
    cleanups.push(() => s.close());
    const r = await attempt(s, broker.url, () => broker.reload());
    expect(r.granted.every((q) => q === 1)).toBe(true);
    expect(r.received).toEqual([]);
    expect(r.victimGot).toBe(true);
  });
});
