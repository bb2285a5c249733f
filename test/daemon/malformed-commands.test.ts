import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES } from '../../base/src/protocol/messages.js';
import { connectServerClient, SERVER_USER, startAedesBroker, type AedesBroker, type ServerClient } from '../helpers/broker.js';
import {
  killDaemon,
  makeProbe,
  rawEvents,
  reportNow,
  spawnDaemon,
  startFleetHttp,
  stateMessages,
  waitUntil,
  type DaemonProcess,
  type FleetHttp,
  type LogLine,
  type ProbeFixture,
} from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';

/**
 * Bad input on the commands topic (DESIGN.md, "Conventions": "Bad input ... gets a clear error
 * with a code, and leaves state exactly as it was"): every malformed payload is refused with a
 * logged code, never acted on and never echoed, and the daemon keeps running. The payloads come
 * from a privileged client (the server's credentials), the only one the ACL lets publish there.
 */
const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';
const CANARY = 'canary-payload-Hw2-must-not-be-logged';

let tmp: { dir: string; cleanup: () => Promise<void> };
let broker: AedesBroker;
let http: FleetHttp;
let server: ServerClient;
let p: ProbeFixture;
let d: DaemonProcess | undefined;

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-malformed-');
  broker = await startAedesBroker();
  broker.addUser(SERVER_USER, SERVER_PASSWORD);
  const tokens = new Map<string, string>();
  http = await startFleetHttp(tokens);
  server = await connectServerClient(broker.url, SERVER_PASSWORD);
  p = await makeProbe(tmp.dir, { mqttUrl: broker.url, httpBase: http.base });
  tokens.set(p.id, p.token);
  broker.addUser(p.id, p.token);
}, 60_000);

afterAll(async () => {
  await killDaemon(d);
  await server?.close();
  await broker?.close();
  await http?.close();
  await tmp?.cleanup();
});

const now = (): string => new Date().toISOString();
const sha = 'a'.repeat(64);

/** Each payload, and the code the daemon must log when it refuses it. */
const CASES: { name: string; payload: () => Buffer | string; code: string }[] = [
  { name: 'not JSON', payload: () => `{"v":1,"type":"install" ${CANARY}`, code: 'MESSAGE_NOT_JSON' },
  { name: 'binary garbage', payload: () => randomBytes(512), code: 'MESSAGE_NOT_JSON' },
  {
    name: `oversize (> ${MAX_MESSAGE_BYTES} bytes)`,
    payload: () => JSON.stringify({ v: 1, type: 'report-now', commandId: 'big-1', probeId: p.id, issuedAt: now(), pad: CANARY.repeat(2000) }),
    code: 'MESSAGE_TOO_LARGE',
  },
  { name: 'a JSON array', payload: () => '[1,2,3]', code: 'MESSAGE_INVALID' },
  { name: 'unknown command type', payload: () => JSON.stringify({ v: 1, type: 'reboot', commandId: 'c-reboot', probeId: p.id, issuedAt: now() }), code: 'MESSAGE_INVALID' },
  { name: 'unknown protocol version', payload: () => JSON.stringify({ v: 2, type: 'report-now', commandId: 'c-v2', probeId: p.id, issuedAt: now() }), code: 'MESSAGE_INVALID' },
  {
    name: 'an unknown key',
    payload: () => JSON.stringify({ v: 1, type: 'report-now', commandId: 'c-extra', probeId: p.id, issuedAt: now(), shell: CANARY }),
    code: 'MESSAGE_INVALID',
  },
  {
    name: 'install with a sha256 that is not hex',
    payload: () => JSON.stringify({ v: 1, type: 'install', commandId: 'c-sha', probeId: p.id, issuedAt: now(), pack: { url: `${http.base}/x`, sha256: CANARY, size: 10 } }),
    code: 'MESSAGE_INVALID',
  },
  {
    name: 'install with a negative size',
    payload: () => JSON.stringify({ v: 1, type: 'install', commandId: 'c-size', probeId: p.id, issuedAt: now(), pack: { url: `${http.base}/x`, sha256: sha, size: -1 } }),
    code: 'MESSAGE_INVALID',
  },
  { name: 'a command id with a path in it', payload: () => JSON.stringify({ v: 1, type: 'report-now', commandId: '../../etc/passwd', probeId: p.id, issuedAt: now() }), code: 'MESSAGE_INVALID' },
  {
    name: 'a command naming another probe',
    payload: () => JSON.stringify({ v: 1, type: 'install', commandId: 'c-other', probeId: 'probe-someone-else', issuedAt: now(), pack: { url: `${http.base}/x`, sha256: sha, size: 10 } }),
    code: 'COMMAND_WRONG_PROBE',
  },
];

const refusals = (logs: LogLine[]): LogLine[] => logs.filter((l) => l.msg === 'command refused' || l.msg === 'command for another probe refused');

describe('daemon: malformed MQTT commands', () => {
  it('refuses each malformed payload with a logged code, acts on none, and keeps answering report-now', async () => {
    d = spawnDaemon(p.configPath);
    const daemon = d;
    await waitUntil('the daemon subscribed', () => (broker.subscribes.get(p.id) ?? 0) > 0, 20_000, () => (daemon.child.exitCode !== null ? daemon.stderr() : null));

    for (const c of CASES) await server.command(p.id, c.payload());
    const logged = await waitUntil('a refusal logged for each payload', () => {
      const r = refusals(daemon.logs());
      return r.length >= CASES.length ? r : null;
    });
    expect(logged.map((l) => l.code)).toEqual(CASES.map((c) => c.code));
    for (const [i, l] of logged.entries()) {
      expect(l.level, CASES[i]!.name).toBe(40);
      if (l.msg === 'command refused') expect(l, CASES[i]!.name).toMatchObject({ via: 'mqtt', bytes: expect.any(Number) });
    }
    expect(logged[2]!.bytes).toBeGreaterThan(MAX_MESSAGE_BYTES);

    // Still running, and still answering.
    const before = stateMessages(broker.received, p.id).length;
    await server.command(p.id, reportNow(p.id));
    await waitUntil('a state after report-now', () => stateMessages(broker.received, p.id).length > before, 10_000);
    expect(daemon.child.exitCode).toBeNull();

    // Nothing was acted on: no command accepted, nothing fetched.
    expect(rawEvents(broker.received, p.id).filter((e) => e.type.startsWith('command-') || e.type.startsWith('download-'))).toEqual([]);
    expect(http.requests.filter((r) => r.path.includes('/packs/') || r.path === '/x')).toEqual([]);
    // Never echoed: the payloads' content is in no log line.
    expect(daemon.stdout()).not.toContain(CANARY);
    expect(daemon.stderr()).not.toContain(CANARY);
  });

  it('refuses an install whose pack URL is not http(s) after accepting it, without reading the file', async () => {
    const daemon = d!;
    const cmd = { v: 1, type: 'install', commandId: 'c-file-url', probeId: p.id, issuedAt: now(), pack: { url: 'file:///etc/shadow', sha256: sha, size: 10 } };
    await server.command(p.id, cmd);
    const failed = await waitUntil('download-failed', () => rawEvents(broker.received, p.id).find((e) => e.type === 'download-failed' && e.commandId === 'c-file-url'), 10_000);
    expect(failed.code).toBe('DOWNLOAD_FAILED');
    expect(failed.message).toMatch(/file: URLs are not fetched/);
    expect(daemon.child.exitCode).toBeNull();
  });

  it('never sends its token to an off-loopback http: pack URL', async () => {
    const daemon = d!;
    // 0.0.0.0 is not a loopback address by name, but Linux connects it to this host: had the
    // probe fetched it, the test server would have seen the request and its bearer token.
    const url = `http://0.0.0.0:${http.port}/api/v1/packs/anything/content`;
    const cmd = { v: 1, type: 'install', commandId: 'c-cleartext', probeId: p.id, issuedAt: now(), pack: { url, sha256: sha, size: 10 } };
    await server.command(p.id, cmd);
    const failed = await waitUntil('download-failed', () => rawEvents(broker.received, p.id).find((e) => e.type === 'download-failed' && e.commandId === 'c-cleartext'), 10_000);
    expect(failed).toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/off loopback/) });
    expect(http.requests.filter((r) => r.path.includes('/packs/'))).toEqual([]);
    expect(daemon.child.exitCode).toBeNull();
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
  });
});
