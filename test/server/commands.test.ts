import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandSchema } from '../../base/src/protocol/messages.js';
import type { CommandChange } from '../../server/src/store/types.js';
import { sonde } from '../helpers/probe-state.js';
import { api, serverSamples, SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

/**
 * The commands service, the seam rollouts drive: store first, publish over MQTT (in chunks for a
 * fan-out), keep until acknowledged, publish again when the probe returns, hand out by `/next`
 * while a probe polls.
 */
let s: TestServer;
let packSha: string;

beforeAll(async () => {
  const samples = await serverSamples();
  // Small chunks, so that a fan-out of 60 spans several of them; /next repeats after 1.5 s.
  s = await startTestServer({ keyring: samples.keys.rootCert, options: { fanoutChunk: 7, pollRepeatMs: 1500 } });
  const bytes = await readFile(samples.packs['1.0.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  packSha = createHash('sha256').update(bytes).digest('hex');
});
afterAll(() => s.close());

describe('the commands service', () => {
  it('publishes an install command the agent would accept, pointing at the pack on this server', async () => {
    const creds = await s.enroll('cmd-1');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      const c = await s.server.context.commands.send('cmd-1', { type: 'install', packSha256: packSha }, { rolloutId: 'r-test' });
      const got = await waitFor('the command', () => p.commands.find((x) => x.commandId === c.commandId));
      expect(commandSchema.parse(got)).toMatchObject({ type: 'install', probeId: 'cmd-1', rolloutId: 'r-test', pack: { sha256: packSha } });
      if (got.type !== 'install') throw new Error('not an install');
      expect(got.pack.url).toBe(`${s.url}/api/v1/packs/${packSha}/content`);
      const download = await api(s.url, 'GET', new URL(got.pack.url).pathname, { token: creds.token });
      expect(download.status).toBe(200);
      expect(download.raw.length).toBe(got.pack.size);
      expect((await s.server.context.commands.get(c.commandId)).status).toBe('sent');
      expect((await s.server.context.commands.forRollout('r-test')).map((x) => x.commandId)).toEqual([c.commandId]);
    } finally {
      await p.close();
    }
  });

  it('tells listeners every status change the probe reports', async () => {
    const creds = await s.enroll('cmd-2');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    const seen: CommandChange[] = [];
    const off = s.server.context.commands.onChange((changes) => void seen.push(...changes));
    try {
      const c = await s.server.context.commands.send('cmd-2', { type: 'install', packSha256: packSha });
      await waitFor('the command', () => p.commands.length > 0);
      await p.event('command-accepted', { commandId: c.commandId });
      await p.event('download-started', { commandId: c.commandId });
      await p.event('install-outcome', { deploymentId: 'd-1', outcome: 'committed', commandId: c.commandId, version: '1.0.0' });
      await s.settle();
      expect(seen.filter((x) => x.commandId === c.commandId).map((x) => x.status)).toEqual(['accepted', 'running', 'succeeded']);
      expect(seen.at(-1)).toMatchObject({ deploymentId: 'd-1', probeId: 'cmd-2' });
    } finally {
      off();
      await p.close();
    }
  });

  it('gives an offline probe its command when it comes back', async () => {
    const creds = await s.enroll('cmd-away');
    const c = await s.server.context.commands.send('cmd-away', { type: 'install', packSha256: packSha });
    const report = await s.server.context.commands.send('cmd-away', { type: 'report-now' });
    expect(report.status).toBe('pending'); // nothing acknowledges a report-now: it waits for the probe
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      await waitFor('the redelivery', () => p.commands.some((x) => x.commandId === c.commandId) && p.commands.some((x) => x.commandId === report.commandId));
      await waitFor('report-now delivered', async () => (await s.server.context.commands.get(report.commandId)).status === 'delivered');
      await p.event('command-accepted', { commandId: c.commandId });
      await s.settle();
      expect((await s.server.context.commands.get(c.commandId)).status).toBe('accepted');
    } finally {
      await p.close();
    }
  });

  it('delivers commands at QoS 0, and publishes again on reconnect one that a connection never delivered', async () => {
    const creds = await s.enroll('cmd-lost');
    // Connected and authenticated, but not subscribed: the broker delivers the command to no one.
    const deaf = await mqtt.connectAsync(s.mqttUrl, { clientId: 'cmd-lost', username: 'cmd-lost', password: creds.token, clean: true, reconnectPeriod: 0 });
    const c = await s.server.context.commands.send('cmd-lost', { type: 'install', packSha256: packSha });
    await waitFor('the command published', async () => (await s.server.context.commands.get(c.commandId)).status === 'sent');
    await deaf.endAsync();
    const p = await SimProbe.connect(s.mqttUrl, creds);
    const qos: number[] = [];
    p.client.on('message', (_topic, _payload, packet) => void qos.push(packet.qos));
    try {
      // Still unacknowledged: the probe's return brings it out again.
      await waitFor('the redelivery', () => p.commands.some((x) => x.commandId === c.commandId));
      await waitFor('its QoS', () => qos.length > 0);
      expect(qos).toEqual([0]);
      await p.event('command-accepted', { commandId: c.commandId });
      await s.settle();
      expect((await s.server.context.commands.get(c.commandId)).status).toBe('accepted');
    } finally {
      await p.close();
    }
  });

  it('hands commands to a polling probe: each in turn, repeated until acknowledged, then 204', async () => {
    const creds = await s.enroll('cmd-poll');
    const a = await s.server.context.commands.send('cmd-poll', { type: 'install', packSha256: packSha });
    const b = await s.server.context.commands.send('cmd-poll', { type: 'report-now' });
    const next = async (): Promise<{ status: number; id: string | null }> => {
      const r = await api<{ commandId?: string }>(s.url, 'GET', '/api/v1/probes/cmd-poll/next', { token: creds.token });
      return { status: r.status, id: r.status === 200 ? commandSchema.parse(r.body).commandId : null };
    };
    expect(await next()).toEqual({ status: 200, id: a.commandId });
    expect(await next()).toEqual({ status: 200, id: b.commandId });
    // Neither is repeated at once; the report-now is done, the install waits for its acknowledgement.
    expect(await next()).toEqual({ status: 204, id: null });
    await new Promise((r) => setTimeout(r, 1600));
    expect(await next()).toEqual({ status: 200, id: a.commandId });
    // The probe's outbox reaches the server: acknowledged, never handed out again.
    const p = await SimProbe.connect(s.mqttUrl, creds);
    await p.event('command-accepted', { commandId: a.commandId });
    await s.settle();
    await p.close();
    await new Promise((r) => setTimeout(r, 1600));
    expect(await next()).toEqual({ status: 204, id: null });
  });

  it('fans out to 60 probes in chunks: each gets exactly its own command, once', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => `fan-${String(i).padStart(2, '0')}`);
    const probes = await Promise.all(ids.map(async (id) => SimProbe.connect(s.mqttUrl, await s.enroll(id))));
    try {
      await s.settle();
      const sent = await s.server.context.commands.sendMany(ids, { type: 'install', packSha256: packSha }, { rolloutId: 'r-fan' });
      expect(sent).toHaveLength(60);
      await waitFor('every probe', () => probes.every((p) => p.commands.length === 1));
      for (const p of probes) {
        expect(p.commands[0]!.probeId).toBe(p.probeId);
        expect(sent.find((c) => c.probeId === p.probeId)?.commandId).toBe(p.commands[0]!.commandId);
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(probes.map((p) => p.commands.length)).toEqual(ids.map(() => 1));
      const stored = await s.server.context.commands.forRollout('r-fan');
      expect(stored.every((c) => c.status === 'sent')).toBe(true);
    } finally {
      await Promise.all(probes.map((p) => p.close()));
    }
  });

  it('refuses a fan-out naming a probe that is not enrolled, storing nothing', async () => {
    await expect(s.server.context.commands.sendMany(['fan-00', 'ghost'], { type: 'report-now' }, { rolloutId: 'r-ghost' })).rejects.toMatchObject({ code: 'PROBE_NOT_FOUND' });
    expect(await s.server.context.commands.forRollout('r-ghost')).toEqual([]);
  });

  it('cancels a command the probe has not acknowledged, and tells the probe', async () => {
    const creds = await s.enroll('cmd-cancel');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      const c = await s.server.context.commands.send('cmd-cancel', { type: 'install', packSha256: packSha });
      // (It may come twice: once sent, once more when the server hears the probe's `online`.)
      await waitFor('the command', () => p.commands.some((x) => x.commandId === c.commandId));
      const r = await s.api<{ status: string }>('POST', `/api/v1/commands/${c.commandId}/cancel`);
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('cancelled');
      const cancel = await waitFor('the cancel', () => p.commands.find((x) => x.type === 'cancel'));
      expect(cancel).toMatchObject({ type: 'cancel', target: c.commandId });
    } finally {
      await p.close();
    }
  });

  it('sonde cancel --probe cancels every unfinished install of a probe; one it accepted ends cancelled once the probe says it stopped it', async () => {
    const creds = await s.enroll('cmd-cancel-cli');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    const cli = (args: string[], token = s.admin) => sonde(args, '', undefined, { SONDE_SERVER: s.url, SONDE_TOKEN: token });
    try {
      const c = await s.server.context.commands.send('cmd-cancel-cli', { type: 'install', packSha256: packSha });
      await waitFor('the command', () => p.commands.some((x) => x.commandId === c.commandId));
      await p.event('command-accepted', { commandId: c.commandId });
      await p.event('download-started', { commandId: c.commandId });
      await s.settle();
      const viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'cancel-viewer', role: 'viewer' } })).body.token;
      const refused = await cli(['cancel', '--probe', 'cmd-cancel-cli'], viewer);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/FORBIDDEN/);
      expect((await s.server.context.commands.get(c.commandId)).status).toBe('running');

      const r = await cli(['cancel', '--probe', 'cmd-cancel-cli']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(c.commandId);
      expect(r.stdout).toContain('cancel sent to the probe (it was running)');
      await waitFor('the cancel', () => p.commands.find((x) => x.type === 'cancel' && x.target === c.commandId));
      // Until the probe answers, the command is what the probe last said.
      expect((await s.server.context.commands.get(c.commandId)).status).toBe('running');
      await p.event('download-failed', { commandId: c.commandId, code: 'COMMAND_CANCELLED', message: 'cancelled by the server during the download; the partial file was removed' });
      await s.settle();
      expect(await s.server.context.commands.get(c.commandId)).toMatchObject({ status: 'cancelled', errorCode: 'COMMAND_CANCELLED' });

      const nothing = await cli(['cancel', '--probe', 'cmd-cancel-cli']);
      expect(nothing.stdout).toContain('nothing to cancel');
      const usage = await cli(['cancel']);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toMatch(/USAGE/);
    } finally {
      await p.close();
    }
  });
});
