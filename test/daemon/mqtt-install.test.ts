import { readdir, readFile } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { topics } from '../../base/src/protocol/topics.js';
import { connectServerClient, SERVER_USER, startAedesBroker, type AedesBroker, type ServerClient } from '../helpers/broker.js';
import {
  daemonSamples,
  dedupe,
  history,
  installCommand,
  makeProbe,
  outcomeOf,
  rawEvents,
  startDaemon,
  startFleetHttp,
  stateMessages,
  trace,
  waitUntil,
  type FleetHttp,
  type InProcessDaemon,
  type ProbeFixture,
} from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';
import { httpJson, stopApp } from '../helpers/probe.js';

/**
 * The daemon against the fleet server's embedded broker (aedes in-process, with the server's
 * auth and ACLs): install commands over MQTT, downloads over HTTP, events and state back, and
 * what happens when the broker or the download link goes away mid-way (issue 4).
 */
const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';
const CANARY = 'canary-daemon-Qp3-collector-secret';

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let broker: AedesBroker;
let http: FleetHttp;
let server: ServerClient;
const tokens = new Map<string, string>();
const roots: string[] = [];
let running: InProcessDaemon[] = [];

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-mqtt-');
  s = await daemonSamples();
  broker = await startAedesBroker();
  broker.addUser(SERVER_USER, SERVER_PASSWORD);
  http = await startFleetHttp(tokens);
  for (const v of ['1.0.0', '1.1.0'] as const) http.addPack(v, await readFile(s.packs[v]));
  server = await connectServerClient(broker.url, SERVER_PASSWORD);
}, 180_000);

afterEach(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  running = [];
});

afterAll(async () => {
  for (const r of roots) await stopApp(r).catch(() => undefined);
  await server?.close();
  await broker?.close();
  await http?.close();
  await tmp?.cleanup();
});

async function probe(over: Record<string, unknown> = {}): Promise<ProbeFixture> {
  const p = await makeProbe(tmp.dir, { samples: s, mqttUrl: broker.url, httpBase: http.base, config: over });
  tokens.set(p.id, p.token);
  broker.addUser(p.id, p.token);
  roots.push(p.root);
  return p;
}

async function daemon(p: ProbeFixture): Promise<InProcessDaemon> {
  const before = broker.subscribes.get(p.id) ?? 0;
  const d = await startDaemon(p);
  running.push(d);
  await waitUntil('the probe subscribed to its commands', () => (broker.subscribes.get(p.id) ?? 0) > before);
  return d;
}

async function packRef(version: '1.0.0' | '1.1.0'): Promise<ReturnType<FleetHttp['addPack']>> {
  return http.addPack(version, await readFile(s.packs[version]));
}

describe('daemon over MQTT (aedes with the fleet ACLs)', () => {
  it('installs 1.0.0 then 1.1.0 from install commands, reporting each step and a non-retained state', async () => {
    const p = await probe();
    await daemon(p);

    // 1.0.0 on a fresh root.
    const first = installCommand(p.id, await packRef('1.0.0'));
    await server.command(p.id, first);
    const out1 = await waitUntil('install-outcome of 1.0.0', () => outcomeOf(broker.received, p.id, first.commandId), 30_000);
    expect(out1).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    const ev1 = trace(rawEvents(broker.received, p.id).filter((e) => e.commandId === first.commandId || e.deploymentId === out1.deploymentId));
    expect(ev1[0]).toBe('command-accepted');
    expect(ev1).toEqual(expect.arrayContaining(['download-started', 'download-progress', 'download-complete', 'install-state:verified', 'install-state:committed']));
    expect(ev1.at(-1)).toBe('install-outcome:committed');
    expect(ev1.indexOf('download-complete')).toBeLessThan(ev1.indexOf('install-state:verified'));
    const st1 = await waitUntil('a state naming 1.0.0', () => stateMessages(broker.received, p.id).find((m) => m.state.version === '1.0.0'));
    expect(st1.state).toMatchObject({ probeId: p.id, product: 'probe-app', slot: expect.stringMatching(/^[ab]$/) });
    expect(((await httpJson(p.appPort, '/status')).body as { version: string }).version).toBe('1.0.0');

    // 1.1.0 needs the collector password: the operator sets it on the probe.
    await setSiteVar(layoutOf(p.root).siteVars, 'CollectorPassword', CANARY);
    const second = installCommand(p.id, await packRef('1.1.0'));
    await server.command(p.id, second);
    const out2 = await waitUntil('install-outcome of 1.1.0', () => outcomeOf(broker.received, p.id, second.commandId), 30_000);
    expect(out2).toMatchObject({ outcome: 'committed', version: '1.1.0' });
    const st2 = await waitUntil('a state naming 1.1.0', () => stateMessages(broker.received, p.id).find((m) => m.state.version === '1.1.0'));
    expect(st2.state).toMatchObject({ dbVersion: 2, configVersion: 2, lastDeployment: { id: out2.deploymentId, outcome: 'committed', version: '1.1.0' } });
    const config = JSON.parse(await readFile(layoutOf(p.root).config, 'utf8')) as { collector: { password: string } };
    expect(config.collector.password).toBe(CANARY);

    // Not retained: no state carried the flag, and the broker holds no retained message.
    expect(stateMessages(broker.received, p.id).every((m) => !m.retain)).toBe(true);
    expect(broker.received.filter((r) => r.topic === topics.events(p.id)).every((r) => !r.retain)).toBe(true);
    expect(await broker.retained()).toEqual([]);
    // The site secret never left the probe.
    expect(broker.received.some((r) => r.payload.toString().includes(CANARY))).toBe(false);
    // The probe stayed inside its ACL.
    expect(broker.denied.filter((d) => d.clientId === p.id)).toEqual([]);
  });
});

describe('daemon: the broker goes away', () => {
  it('delivers every event of an install run while the broker was down, in order, none missing, once after de-duplication', async () => {
    const p = await probe();
    const d = await daemon(p);
    // Slow the download a little, so the install surely runs while the broker is down.
    http.setPackBehaviour({ throttle: { bytes: 4096, everyMs: 100 } });
    const cmd = installCommand(p.id, await packRef('1.0.0'));
    // The broker dies as it takes in the first event after the acceptance, before acknowledging
    // it: that event is lost to the probe, which must send it again after the restart.
    const died = broker.dieOn((r) => r.topic === topics.events(p.id) && /"type":"download-/.test(r.payload.toString()));
    await server.command(p.id, cmd);
    await died;
    let waiting;
    try {
      expect(rawEvents(broker.received, p.id).some((e) => e.type === 'command-accepted' && e.commandId === cmd.commandId)).toBe(true);
      const receivedWhileDown = broker.received.length;
      // The whole install runs with no broker: its events wait in the outbox.
      await waitUntil('the install to end', () => d.daemon.outbox.peek(1000).some((r) => r.event.type === 'install-outcome'), 30_000);
      waiting = d.daemon.outbox.peek(1000).map((r) => r.event);
      expect(trace(waiting)).toEqual(expect.arrayContaining(['download-complete', 'install-state:trial', 'install-outcome:committed']));
      expect(broker.received.length).toBe(receivedWhileDown);
    } finally {
      await broker.restart();
    }
    const outcome = await waitUntil('the outcome after the restart', () => outcomeOf(broker.received, p.id, cmd.commandId), 20_000);
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    await waitUntil('the outbox drained', () => d.daemon.outbox.size() === 0);
    http.setPackBehaviour({});

    const raw = rawEvents(broker.received, p.id);
    // The broker publishes the probe's last will when its connection dies; the will repeats the
    // seq of the last event assigned before that connection and is not part of the outbox stream.
    const wills = raw.filter((e) => e.type === 'offline' && e.id.startsWith('offline-'));
    const { unique, duplicates } = dedupe(raw.filter((e) => !wills.includes(e)));
    console.info(`[broker down during install] raw events ${raw.length - wills.length}, duplicates ${duplicates}, last wills ${wills.length}`);
    const seqs = unique.map((e) => e.seq);
    // In order: seq strictly increasing in arrival order.
    for (let i = 1; i < seqs.length; i++) expect(seqs[i], `event ${unique[i]!.type} arrived out of order`).toBeGreaterThan(seqs[i - 1]!);
    // None missing: the probe's seqs are 1..n without a gap, and everything that waited arrived.
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    for (const w of waiting) expect(unique.filter((e) => e.id === w.id), `event ${w.type} #${w.seq}`).toHaveLength(1);
    // The raw stream's duplicates are redeliveries of an event, with the same id and seq.
    for (const e of raw) expect(unique.find((u) => u.id === e.id)?.seq ?? e.seq).toBe(e.seq);
    expect(trace(unique).filter((t) => t === 'install-outcome:committed')).toHaveLength(1);
    // The event whose PUBACK died with the broker came twice.
    expect(duplicates).toBeGreaterThanOrEqual(1);
    expect(broker.denied.filter((x) => x.clientId === p.id)).toEqual([]);
  });

  it('reconnects after a broker restart and answers report-now again', async () => {
    const p = await probe();
    await daemon(p);
    const before = broker.connects.get(p.id) ?? 0;
    await broker.restart();
    await waitUntil('a second connection', () => (broker.connects.get(p.id) ?? 0) > before, 10_000);
    await waitUntil('subscribed again', () => (broker.subscribes.get(p.id) ?? 0) >= 2, 10_000);
    const onlines = dedupe(rawEvents(broker.received, p.id)).unique.filter((e) => e.type === 'online');
    expect(onlines.length).toBeGreaterThanOrEqual(2);
    const statesBefore = stateMessages(broker.received, p.id).length;
    await server.command(p.id, { v: 1, type: 'report-now', commandId: 'report-after-restart', probeId: p.id, issuedAt: new Date().toISOString() });
    await waitUntil('a state after report-now', () => stateMessages(broker.received, p.id).length > statesBefore, 10_000);
  });
});

describe('daemon: downloads', () => {
  it('resumes a download cut 12 times with Range requests and installs the exact bytes', async () => {
    const p = await probe();
    await daemon(p);
    const ref = await packRef('1.0.0');
    http.setPackBehaviour({ cut: { afterBytes: 1024, times: 12 } });
    const firstRequest = http.packRequests('1.0.0').length;
    const cmd = installCommand(p.id, ref);
    await server.command(p.id, cmd);
    const outcome = await waitUntil('the outcome', () => outcomeOf(broker.received, p.id, cmd.commandId), 40_000);
    http.setPackBehaviour({});
    expect(outcome).toMatchObject({ outcome: 'committed', version: '1.0.0' });

    const reqs = http.packRequests('1.0.0').slice(firstRequest);
    expect(reqs.length).toBe(13);
    expect(reqs[0]!.range).toBeUndefined();
    let offset = 0;
    for (const r of reqs) {
      // Each retry asks for exactly the bytes after the ones it kept.
      if (offset > 0) expect(r.range).toBe(`bytes=${offset}-`);
      expect(r.authorization).toBe(`Bearer ${p.token}`);
      offset += r.bytesSent;
    }
    expect(offset).toBe(ref.size);
    expect(reqs.slice(0, 12).every((r) => r.bytesSent === 1024 && r.status === (r.range ? 206 : 200))).toBe(true);
    const st = await waitUntil('a state naming 1.0.0', () => stateMessages(broker.received, p.id).find((m) => m.state.version === '1.0.0'));
    expect(st.state.lastDeployment?.outcome).toBe('committed');
  });

  it('rejects a download whose bytes do not match the command (DOWNLOAD_HASH_MISMATCH) and never installs it', async () => {
    const p = await probe();
    await daemon(p);
    const good = installCommand(p.id, await packRef('1.0.0'));
    await server.command(p.id, good);
    await waitUntil('1.0.0 committed', () => outcomeOf(broker.received, p.id, good.commandId), 30_000);
    const before = await history(p.root);

    const real = await packRef('1.1.0');
    const lying = installCommand(p.id, { ...real, sha256: '0'.repeat(64) });
    await server.command(p.id, lying);
    const failed = await waitUntil('download-failed', () => rawEvents(broker.received, p.id).find((e) => e.type === 'download-failed' && e.commandId === lying.commandId), 20_000);
    expect(failed.code).toBe('DOWNLOAD_HASH_MISMATCH');
    expect(rawEvents(broker.received, p.id).some((e) => e.commandId === lying.commandId && (e.type === 'download-complete' || e.type === 'install-outcome'))).toBe(false);
    // The engine never saw it: the same attempts, the same release, nothing left in staging.
    expect((await history(p.root)).map((x) => [x.id, x.state])).toEqual(before.map((x) => [x.id, x.state]));
    expect(await readdir(`${layoutOf(p.root).staging}/downloads`)).toEqual([]);
    expect(((await httpJson(p.appPort, '/status')).body as { version: string }).version).toBe('1.0.0');
  });
});

describe('the embedded broker\'s ACL (as the fleet server configures aedes)', () => {
  it('refuses a probe\'s publish or subscribe outside its own topics, and a client id that is not its username', async () => {
    const p = await probe();
    const other = await probe();
    const connect = (clientId: string, username: string, password: string): Promise<MqttClient> =>
      mqtt.connectAsync(broker.url, { clientId, username, password, clean: true, reconnectPeriod: 0, connectTimeout: 3000, protocolVersion: 4 });

    await expect(connect(`${p.id}-impostor`, p.id, p.token)).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(connect(p.id, p.id, other.token)).rejects.toThrow(/Bad username or password|Not authorized/i);

    const c = await connect(p.id, p.id, p.token);
    try {
      expect((await c.subscribeAsync(topics.commands(p.id), { qos: 1 })).map((g) => g.qos)).toEqual([1]);
      // A failure return code (0x80) in the SUBACK, which mqtt.js turns into an error.
      await expect(c.subscribeAsync(topics.commands(other.id), { qos: 1 })).rejects.toThrow(/Subscribe error/);
      await expect(c.subscribeAsync(topics.events(other.id), { qos: 1 })).rejects.toThrow(/Subscribe error/);
      const before = broker.received.length;
      // aedes closes the connection of a client whose publish it refuses.
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      c.publish(topics.events(other.id), JSON.stringify({ forged: true }), { qos: 1 });
      await closed;
      expect(broker.received.slice(before)).toEqual([]);
      expect(broker.denied).toEqual(
        expect.arrayContaining([
          { clientId: p.id, action: 'subscribe', topic: topics.commands(other.id) },
          { clientId: p.id, action: 'publish', topic: topics.events(other.id) },
        ]),
      );
    } finally {
      await c.endAsync(true).catch(() => undefined);
    }
  });
});
