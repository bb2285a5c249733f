import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { freePort } from '../probe-app/probe-root.js';
import {
  daemonSamples,
  history,
  installCommand,
  makeProbe,
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
 * The polling fallback (DESIGN.md, "Drops": "Polling the server over HTTP is the fallback when
 * MQTT is down"): with no broker to reach, the daemon asks `GET /api/v1/probes/{id}/next` with
 * its bearer token, runs what it is given once, and backs off while the server answers 503.
 */
const POLL = { intervalMs: 150, maxIntervalMs: 1500, afterOfflineMs: 300 };

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let http: FleetHttp;
const tokens = new Map<string, string>();
let p: ProbeFixture;
let d: InProcessDaemon | undefined;

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-poll-');
  s = await daemonSamples();
  http = await startFleetHttp(tokens);
  // Nothing listens on this port: MQTT is unreachable for the whole file.
  const deadMqtt = `mqtt://127.0.0.1:${await freePort()}`;
  p = await makeProbe(tmp.dir, { samples: s, mqttUrl: deadMqtt, httpBase: http.base, config: { poll: POLL, reconnect: { minMs: 1000, maxMs: 5000 } } });
  tokens.set(p.id, p.token);
}, 180_000);

afterAll(async () => {
  await d?.stop().catch(() => undefined);
  await stopApp(p.root).catch(() => undefined);
  await http?.close();
  await tmp?.cleanup();
});

describe('daemon: polling when MQTT is unreachable', () => {
  it('polls /next with its bearer token and runs the command it returns exactly once', async () => {
    const pack = http.addPack('1.0.0', await readFile(s.packs['1.0.0']));
    const cmd = installCommand(p.id, pack);
    // The server hands out the command on every poll until it hears back (it cannot: no MQTT).
    http.setNext(p.id, cmd);
    const started = Date.now();
    d = await startDaemon(p);
    const daemon = d.daemon;

    await waitUntil('the command done', () => daemon.commands.get(cmd.commandId)?.status === 'done', 30_000);
    const polls = http.polls(p.id);
    expect(polls.length).toBeGreaterThan(0);
    // Not before MQTT had been down for afterOfflineMs.
    expect(polls[0]!.at - started).toBeGreaterThanOrEqual(POLL.afterOfflineMs - 50);
    expect(polls.every((r) => r.authorization === `Bearer ${p.token}` && r.status === 200)).toBe(true);

    const h = await history(p.root);
    expect(h).toHaveLength(1);
    expect(h[0]).toMatchObject({ state: 'committed', toVersion: '1.0.0' });
    // Its events wait in the outbox for MQTT to come back.
    const waiting = daemon.outbox.peek(1000).map((r) => r.event);
    expect(waiting.find((e) => e.type === 'install-outcome')).toMatchObject({ commandId: cmd.commandId, outcome: 'committed' });
    expect(waiting.filter((e) => e.type === 'command-accepted' && e.commandId === cmd.commandId)).toHaveLength(1);

    // Later polls hand out the same command again: recognised by its id, not run twice.
    const n = http.polls(p.id).length;
    await waitUntil('two more polls', () => http.polls(p.id).length >= n + 2, 5000);
    expect(d.logs.some((l) => l.msg === 'command seen before; ignored' && l.commandId === cmd.commandId && l.via === 'poll')).toBe(true);
    expect(await history(p.root)).toHaveLength(1);
  });

  it('backs off while the server answers 503, and polls at its interval again once it recovers', async () => {
    http.setNext(p.id, null);
    await sleep(POLL.intervalMs * 2);
    http.unavailable = true;
    const from = http.polls(p.id).length;
    const windowMs = 4000;
    await sleep(windowMs);
    const during = http.polls(p.id).slice(from);
    http.unavailable = false;
    expect(during.every((r) => r.status === 503)).toBe(true);
    // At a fixed interval it would have polled windowMs / intervalMs (about 26) times.
    expect(during.length).toBeGreaterThanOrEqual(2);
    expect(during.length).toBeLessThanOrEqual(12);
    const gaps = during.slice(1).map((r, i) => r.at - during[i]!.at);
    expect(Math.max(...gaps)).toBeGreaterThan(POLL.intervalMs * 3);
    expect(gaps.every((g) => g <= POLL.maxIntervalMs + 200)).toBe(true);

    // Recovered: the first good answer resets the backoff.
    const firstGood = await waitUntil('a poll answered 204', () => http.polls(p.id).find((r, i) => i >= from + during.length && r.status === 204), POLL.maxIntervalMs + 2000);
    await sleep(1000);
    const after = http.polls(p.id).filter((r) => r.at >= firstGood.at);
    expect(after.length).toBeGreaterThanOrEqual(5);
  });
});
