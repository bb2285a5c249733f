import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { eventSchema, stateSchema, type ProbeEvent } from '../../base/src/protocol/messages.js';
import { topics } from '../../base/src/protocol/topics.js';
import { connectServerClient, MOSQUITTO, MOSQUITTO_PASSWD, SERVER_USER, startMosquitto, type MosquittoBroker, type ServerClient } from '../helpers/broker.js';
import {
  daemonSamples,
  installCommand,
  makeProbe,
  newToken,
  sleep,
  startDaemon,
  startFleetHttp,
  waitUntil,
  type FleetHttp,
  type InProcessDaemon,
  type ProbeFixture,
} from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';
import { stopApp } from '../helpers/probe.js';

/**
 * Interop with an external broker (DESIGN.md, "Pointing the server at an external broker
 * (Mosquitto, EMQX) works the same way"): Debian's Mosquitto 2.0 as a child process, with the
 * password file and `%u` pattern ACLs the fleet server will write. Mosquitto confines differently
 * from aedes (notes/fleet-facts.md): a publish to another probe's topic is acknowledged but
 * dropped, and a subscription to another probe's topic is granted but never delivers.
 */
const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';
const OTHER = 'probe-neighbour';
const OTHER_TOKEN = newToken();

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let mosq: MosquittoBroker;
let http: FleetHttp;
let server: ServerClient;
let p: ProbeFixture;
let d: InProcessDaemon | undefined;
const extra: MqttClient[] = [];

const events = (probeId: string): ProbeEvent[] =>
  server.messages.filter((m) => m.topic === topics.events(probeId)).map((m) => eventSchema.parse(JSON.parse(m.payload.toString())));

function client(username: string, password: string, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(mosq.url, { clientId, username, password, clean: true, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 }).then((c) => {
    extra.push(c);
    return c;
  });
}

const haveMosquitto = existsSync(MOSQUITTO) && existsSync(MOSQUITTO_PASSWD);

beforeAll(async () => {
  if (!haveMosquitto) return;
  tmp = await scratch('sonde-daemon-mosq-');
  s = await daemonSamples();
  const tokens = new Map<string, string>();
  http = await startFleetHttp(tokens);
  // The credentials exist before Mosquitto starts: its password file is written once, up front.
  const id = 'probe-mosq-0001';
  const token = newToken();
  mosq = await startMosquitto({ [SERVER_USER]: SERVER_PASSWORD, [id]: token, [OTHER]: OTHER_TOKEN });
  server = await connectServerClient(mosq.url, SERVER_PASSWORD, ['sonde/v1/probes/+/events', 'sonde/v1/probes/+/state']);
  p = await makeProbe(tmp.dir, { samples: s, mqttUrl: mosq.url, httpBase: http.base, id, token });
  tokens.set(id, token);
}, 180_000);

afterAll(async () => {
  if (!haveMosquitto) return;
  for (const c of extra) await c.endAsync(true).catch(() => undefined);
  await d?.stop().catch(() => undefined);
  if (p) await stopApp(p.root).catch(() => undefined);
  await server?.close();
  await mosq?.close();
  await http?.close();
  await tmp?.cleanup();
});

describe.skipIf(!haveMosquitto && !process.env.CI)('daemon against Mosquitto 2.0 (password file, %u pattern ACLs)', () => {
  it('connects with the password-file credentials and runs an install command end to end', async () => {
    d = await startDaemon(p);
    await waitUntil('online at the server', () => events(p.id).some((e) => e.type === 'online'), 15_000);
    const pack = http.addPack('1.0.0', await readFile(s.packs['1.0.0']));
    const cmd = installCommand(p.id, pack);
    await server.command(p.id, cmd);
    const outcome = await waitUntil('the outcome', () => events(p.id).find((e) => e.type === 'install-outcome' && e.commandId === cmd.commandId), 30_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    const trail = events(p.id).filter((e) => e.commandId === cmd.commandId).map((e) => e.type);
    expect(trail[0]).toBe('command-accepted');
    expect(trail).toEqual(expect.arrayContaining(['download-started', 'download-complete', 'install-outcome']));
    const state = await waitUntil('a state naming 1.0.0', () =>
      server.messages.filter((m) => m.topic === topics.state(p.id)).map((m) => stateSchema.parse(JSON.parse(m.payload.toString()))).find((x) => x.version === '1.0.0'),
    );
    expect(state.lastDeployment?.outcome).toBe('committed');

    // Nothing retained: a fresh subscriber to everything gets nothing.
    const late = await client(SERVER_USER, SERVER_PASSWORD, 'late-subscriber');
    const retained: string[] = [];
    late.on('message', (t) => retained.push(t));
    await late.subscribeAsync('sonde/v1/probes/#', { qos: 1 });
    await sleep(300);
    expect(retained).toEqual([]);
  });

  it('refuses a wrong password', async () => {
    await expect(client(p.id, newToken(), 'wrong-password')).rejects.toThrow(/Not authorized|Bad username or password/i);
  });

  it('acknowledges but drops a probe\'s publish on another probe\'s topics, and never delivers it another probe\'s commands', async () => {
    // A client holding the probe's own credentials (a compromised or buggy probe).
    const rogue = await client(p.id, p.token, `${p.id}-rogue`);
    const neighbour = await client(OTHER, OTHER_TOKEN, OTHER);
    const toNeighbour: string[] = [];
    neighbour.on('message', (t, payload) => toNeighbour.push(`${t} ${payload.toString()}`));
    await neighbour.subscribeAsync(topics.commands(OTHER), { qos: 1 });
    const toRogue: string[] = [];
    rogue.on('message', (t) => toRogue.push(t));
    // Granted by Mosquitto, but never delivers.
    const granted = await rogue.subscribeAsync(topics.commands(OTHER), { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);

    const forged = { v: 1, type: 'report-now', commandId: 'forged-1', probeId: OTHER, issuedAt: new Date().toISOString() };
    const seenBefore = server.messages.length;
    // Each is acknowledged (PUBACK), which is how Mosquitto drops a publish the ACL denies.
    await rogue.publishAsync(topics.events(OTHER), JSON.stringify({ forged: true }), { qos: 1 });
    await rogue.publishAsync(topics.state(OTHER), JSON.stringify({ forged: true }), { qos: 1 });
    await rogue.publishAsync(topics.commands(OTHER), JSON.stringify(forged), { qos: 1 });
    await rogue.publishAsync(topics.commands(p.id), JSON.stringify({ ...forged, probeId: p.id }), { qos: 1 });
    // A control message the ACL allows, sent last on the same connection: once it arrives,
    // anything forged sent before it would have arrived too.
    await rogue.publishAsync(topics.events(p.id), JSON.stringify({ control: true }), { qos: 1 });
    await waitUntil('the control message', () => server.messages.slice(seenBefore).some((m) => m.payload.toString() === '{"control":true}'), 5000);
    // The server's command to the neighbour reaches the neighbour only.
    await server.command(OTHER, { ...forged, commandId: 'real-1' });
    await waitUntil('the neighbour got its command', () => toNeighbour.some((m) => m.includes('real-1')), 5000);
    await sleep(200);

    const forgedSeen = server.messages.slice(seenBefore).filter((m) => m.payload.toString().includes('forged'));
    expect(forgedSeen).toEqual([]);
    expect(toNeighbour.filter((m) => m.includes('forged-1'))).toEqual([]);
    expect(toRogue).toEqual([]);
    // The probe's own daemon was not fooled by the forged command on its topic either.
    expect(d!.logs.some((l) => l.commandId === 'forged-1')).toBe(false);
    expect(mosq.log()).toMatch(/Denied PUBLISH from probe-mosq-0001-rogue/);
  });
});
