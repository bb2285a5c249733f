import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoPasswordHash } from '../../server/src/mqtt/mosquitto-hash.js';
import { startMosquitto, type Mosquitto } from './mosquitto-harness.js';
import { api, SimProbe, startTestServer, tempDir, waitFor, type TestServer } from './harness.js';

/**
 * `--mqtt-url` with a real Mosquitto 2.0 running the files `sonde server mosquitto-config`
 * writes: PBKDF2 password file, `%u` pattern ACLs, client id = username. The server logs in as
 * its privileged user; probes are confined by Mosquitto, which acknowledges and drops what they
 * may not publish (notes/fleet-facts.md).
 */
let root: string;
let broker: Mosquitto;
let s: TestServer;

interface Probe {
  online: boolean;
  health: string | null;
  version: string | null;
}

beforeAll(async () => {
  root = await tempDir('sonde-mosquitto-test-');
  const data = join(root, 'data');
  await mkdir(data);
  broker = await startMosquitto(data);
  s = await startTestServer({ dataDir: data, options: { mqttUrl: broker.url } });
});
afterAll(async () => {
  await s?.close();
  await broker?.close();
  await rm(root, { recursive: true, force: true });
});

describe('the server with an external Mosquitto', () => {
  it('writes a password file Mosquitto reads: the $7$ PBKDF2 hash of mosquitto_passwd', async () => {
    const passwd = await readFile(join(broker.dir, 'passwd'), 'utf8');
    expect(passwd).toMatch(/^sonde-server:\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$/m);
    // The same algorithm as mosquitto_passwd: a known salt gives the known hash.
    const salt = Buffer.from('BUCJIPPTDT/KZ8Y+', 'base64');
    expect(mosquittoPasswordHash('secret123', salt)).toBe('$7$101$BUCJIPPTDT/KZ8Y+$rR75PZ/5niqSP96MnKQjdJUvXI5/nNlsvkJMZkjzsFSllU+SzYbV/4hn9LAS5Nf0+uFm+4xG/0gqzi0vqfTt/Q==');
    const acl = await readFile(join(broker.dir, 'acl'), 'utf8');
    expect(acl).toContain('pattern write sonde/v1/probes/%u/state');
    expect(acl).toContain('pattern read sonde/v1/probes/%u/commands');
  });

  it('ingests state and events through Mosquitto, and sees the last will', async () => {
    const creds = await s.enroll('mq-a');
    expect(creds.server.mqtt).toBe(broker.url);
    await broker.reload();
    const a = await SimProbe.connect(creds.server.mqtt, creds);
    await a.state({ health: 'ok', version: '2.0.0' });
    await waitFor('the state', async () => (await s.api<Probe>('GET', '/api/v1/probes/mq-a')).body.version === '2.0.0');
    a.drop();
    await waitFor('the will', async () => (await s.api<Probe>('GET', '/api/v1/probes/mq-a')).body.online === false);
  });

  it('delivers commands through Mosquitto, and /next works the same', async () => {
    const creds = await s.enroll('mq-b');
    await broker.reload();
    const b = await SimProbe.connect(creds.server.mqtt, creds);
    try {
      const c = await s.server.context.commands.send('mq-b', { type: 'report-now' });
      await waitFor('the command', () => b.commands.some((x) => x.commandId === c.commandId));
      const polled = await api(s.url, 'GET', '/api/v1/probes/mq-b/next', { token: creds.token });
      expect(polled.status).toBe(204);
    } finally {
      await b.close();
    }
  });

  it('refuses a login with a wrong token, and a probe id the password file does not hold', async () => {
    const creds = await s.enroll('mq-c');
    await broker.reload();
    await expect(mqtt.connectAsync(broker.url, { clientId: 'mq-c', username: 'mq-c', password: 'x'.repeat(43), reconnectPeriod: 0, connectTimeout: 3000 }, false)).rejects.toThrow();
    await expect(mqtt.connectAsync(broker.url, { clientId: 'nobody', username: 'nobody', password: creds.token, reconnectPeriod: 0, connectTimeout: 3000 }, false)).rejects.toThrow();
  });

  it('acknowledges and drops a publish to another probe topic: its state is untouched', async () => {
    const attacker = await s.enroll('mq-d');
    const victim = await s.enroll('mq-e');
    await broker.reload();
    const a = await SimProbe.connect(broker.url, attacker);
    const b = await SimProbe.connect(broker.url, victim);
    try {
      await b.state({ health: 'ok', version: '1.0.0' });
      await waitFor('the victim state', async () => (await s.api<Probe>('GET', '/api/v1/probes/mq-e')).body.version === '1.0.0');
      // PUBACK comes back (Mosquitto does not tell), and nothing reaches the server.
      const forged = { ...b.stateOf({ health: 'down', version: '6.6.6' }) };
      await a.client.publishAsync('sonde/v1/probes/mq-e/state', JSON.stringify(forged), { qos: 1 });
      await a.client.publishAsync('sonde/v1/probes/mq-e/events', JSON.stringify(b.eventOf('offline')), { qos: 1 });
      await s.settle(300);
      expect((await s.api<Probe>('GET', '/api/v1/probes/mq-e')).body).toMatchObject({ version: '1.0.0', health: 'ok', online: true });
    } finally {
      await a.close();
      await b.close();
    }
  });
});
