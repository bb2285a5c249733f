import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhooks } from '../../server/src/webhooks/webhook.js';
import { serverSamples, SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

/**
 * The webhook: a loopback receiver gets a JSON POST when a probe is stuck past its deadline
 * (reported once per command), and what other modules send through it (a rollout pausing itself).
 */
let s: TestServer;
let receiver: Server;
const received: { type: string; data: Record<string, unknown>; headers: Record<string, unknown> }[] = [];
let failNext = 0;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (failNext > 0) {
        failNext--;
        res.writeHead(503).end();
        return;
      }
      const p = JSON.parse(body) as { type: string; data: Record<string, unknown> };
      received.push({ ...p, headers: req.headers });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert, options: { webhookUrl: url, stuckAfterMs: 1500, stuckCheckEveryMs: 100 } });
  await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
});
afterAll(async () => {
  await s.close();
  await new Promise<void>((r) => receiver.close(() => r()));
});

describe('the webhook', () => {
  it('reports a probe stuck past its deadline, once', async () => {
    const sha = createHash('sha256').update(await readFile((await serverSamples()).packs['1.0.0'])).digest('hex');
    const creds = await s.enroll('slow');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    try {
      const c = await s.server.context.commands.send('slow', { type: 'install', packSha256: sha });
      await p.event('command-accepted', { commandId: c.commandId });
      await p.event('download-started', { commandId: c.commandId });
      await s.settle();
      const hook = await waitFor('the webhook', () => received.find((r) => r.type === 'probe.stuck'), 8000);
      expect(hook.data).toMatchObject({ probeId: 'slow', commandId: c.commandId, status: 'running' });
      expect(hook.headers['x-sonde-event']).toBe('probe.stuck');
      await new Promise((r) => setTimeout(r, 2000));
      expect(received.filter((r) => r.type === 'probe.stuck')).toHaveLength(1);
    } finally {
      await p.close();
    }
  });

  it('does not report a probe that keeps reporting progress', async () => {
    const sha = createHash('sha256').update(await readFile((await serverSamples()).packs['1.0.0'])).digest('hex');
    const p = await SimProbe.connect(s.mqttUrl, await s.enroll('busy'));
    try {
      const c = await s.server.context.commands.send('busy', { type: 'install', packSha256: sha });
      await p.event('command-accepted', { commandId: c.commandId });
      // Progress every 200 ms for 2.4 s: well past the 1.5 s deadline, never silent that long.
      for (let i = 0; i < 12; i++) {
        await p.event('download-progress', { commandId: c.commandId, bytes: i * 10, totalBytes: 100 });
        await new Promise((r) => setTimeout(r, 200));
      }
      await p.event('install-outcome', { deploymentId: 'd-busy', outcome: 'committed', commandId: c.commandId });
      await s.settle(600);
      expect(received.filter((r) => r.data['probeId'] === 'busy')).toEqual([]);
    } finally {
      await p.close();
    }
  });

  it('delivers what another module sends, retrying a failed delivery', async () => {
    failNext = 1;
    const ctx = s.server.context;
    const hooks = new Webhooks(ctx.store.settings, ctx.log, ctx.metrics, { retryDelaysMs: [50] });
    const sent = hooks.notify('rollout.paused', { rolloutId: 'r-1', reason: 'error threshold' });
    await hooks.flush();
    const got = await waitFor('the retried delivery', () => received.find((r) => r.type === 'rollout.paused'), 5000);
    expect(got.data).toEqual({ rolloutId: 'r-1', reason: 'error threshold' });
    expect(sent.type).toBe('rollout.paused');
  });
});
