import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataDirs, dataPaths } from '../../../server/src/data-dir.js';
import { SERVER_MQTT_USER } from '../../../server/src/mqtt/identity.js';
import { writeMosquittoConfig } from '../../../server/src/mqtt/mosquitto-config.js';
import { SqliteStore } from '../../../server/src/store/sqlite-store.js';
import { stateDigest, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: an operator (or a script) enrolls a probe under the server's own MQTT identity. As an
 * MQTT username, `sonde-server` would share the server's password-file line and its ACL, which
 * reads every probe's topics: that probe could read all commands and publish as the fleet
 * server. Reserved ids are refused at enrollment (PROBE_ID_RESERVED), and a password file never
 * holds a user twice, even for a database an older server let such an id into.
 */
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
  await s.settle();
});
afterAll(() => s.close());

describe('enrolling a probe under a reserved id', () => {
  it.each([SERVER_MQTT_USER, `${SERVER_MQTT_USER}-2`, 'mosquitto', 'admin'])('refuses %s with 400 PROBE_ID_RESERVED and enrolls nothing', async (id) => {
    const before = await stateDigest(s.dir);
    const r = await s.api<{ code: string }>('POST', `/api/v1/probes/${id}/enroll`, { body: {} });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('PROBE_ID_RESERVED');
    await s.settle();
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('still enrolls an ordinary id', async () => {
    expect((await s.api('POST', '/api/v1/probes/probe-7/enroll', { body: {} })).status).toBe(201);
  });
});

describe('sonde server mosquitto-config on a database that holds a reserved probe id', () => {
  it('writes each user once, the server first, and leaves the reserved probe out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sonde-reserved-'));
    try {
      const paths = dataPaths(join(dir, 'data'));
      await createDataDirs(paths);
      const store = SqliteStore.open(paths.db);
      try {
        // As an older server would have let it in: straight into the store.
        for (const id of [SERVER_MQTT_USER, 'probe-1']) {
          await store.probes.enroll(id, { httpBase: 'http://127.0.0.1:1', mqttPasswordHash: `hash-of-${id}`, token: { id: `t-${id}`, kind: 'probe', name: id, role: null, probeId: id, hash: `token-hash-${id}` } });
        }
        const files = await writeMosquittoConfig(store, paths, { out: join(dir, 'mosquitto'), port: 1883, runAs: 'root' });
        const users = (await readFile(files.passwd, 'utf8')).trim().split('\n').map((l) => l.split(':')[0]);
        expect(users).toEqual([SERVER_MQTT_USER, 'probe-1']);
        expect(await readFile(files.passwd, 'utf8')).not.toContain(`hash-of-${SERVER_MQTT_USER}`);
      } finally {
        store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
