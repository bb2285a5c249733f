import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { serverSamples, SimProbe, startTestServer, tampered, tempDir, type TestServer } from './harness.js';

/** Packs at the door: upload, verification, the content-addressed store, Range downloads, GC. */
let samples: SamplePaths;
let s: TestServer;
let scratch: string;
let operator: string;
let viewer: string;

async function upload(file: string, token = operator): Promise<{ status: number; body: Record<string, unknown> }> {
  return s.api<Record<string, unknown>>('POST', '/api/v1/packs', { token, body: await readFile(file), headers: { 'content-type': 'application/octet-stream' } });
}

const sha = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

beforeAll(async () => {
  samples = await serverSamples();
  scratch = await tempDir('sonde-packs-test-');
  s = await startTestServer({ keyring: samples.keys.rootCert, options: { maxPackBytes: 1024 * 1024 } });
  operator = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'ops', role: 'operator' } })).body.token;
  viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'eyes', role: 'viewer' } })).body.token;
});
afterAll(async () => {
  await s.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('POST /api/v1/packs', () => {
  it('stores a trusted pack under its sha256 and answers 201 with the manifest summary', async () => {
    const file = samples.packs['1.1.0'];
    const r = await upload(file);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ sha256: await sha(file), product: 'probe-app', version: '1.1.0', kind: 'servicepack', encrypted: true, created: true });
    expect(r.body['signer']).toMatch(/Sample Release Signer/);
    expect(await readdir(join(s.dir, 'packs'))).toContain(`${await sha(file)}.spk`);
    expect(await readFile(join(s.dir, 'packs', `${await sha(file)}.spk`))).toEqual(await readFile(file));
    expect(await readdir(join(s.dir, 'uploads'))).toEqual([]);
  });

  it('takes the same pack again without storing it twice (201, created false)', async () => {
    const r = await upload(samples.packs['1.1.0']);
    expect(r.status).toBe(201);
    expect(r.body['created']).toBe(false);
    expect((await readdir(join(s.dir, 'packs'))).length).toBe(1);
  });

  it('accepts the body whatever its content type (curl --data-binary sends a form type)', async () => {
    const r = await s.api<Record<string, unknown>>('POST', '/api/v1/packs', {
      token: operator,
      body: await readFile(samples.packs.license),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(201);
    expect(r.body['kind']).toBe('license');
  });

  it.each([
    { verdict: 'a file that is not a pack', make: async () => writeFile(join(scratch, 'junk.spk'), Buffer.alloc(4096, 7)).then(() => join(scratch, 'junk.spk')), code: 'PACK_FORMAT' },
    {
      verdict: 'a pack cut short',
      make: async () => writeFile(join(scratch, 'short.spk'), (await readFile(samples.packs['1.0.0'])).subarray(0, 6000)).then(() => join(scratch, 'short.spk')),
      code: 'PACK_TRUNCATED',
    },
    { verdict: 'a pack with an altered manifest', make: () => tampered(samples.packs['1.0.0'], join(scratch, 'manifest.spk'), (n) => n === 'manifest.json'), code: 'SIGNATURE_INVALID' },
    { verdict: 'a pack with an altered payload', make: () => tampered(samples.packs['1.0.0'], join(scratch, 'payload.spk'), (n) => n.startsWith('payloads/')), code: 'PAYLOAD_HASH_MISMATCH' },
  ])('refuses $verdict with 422 $code and keeps nothing', async ({ make, code }) => {
    const before = await readdir(join(s.dir, 'packs'));
    const r = await upload(await make());
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ statusCode: 422, code });
    expect(await readdir(join(s.dir, 'packs'))).toEqual(before);
    expect(await readdir(join(s.dir, 'uploads'))).toEqual([]);
  });

  it('refuses a pack signed under a root the server does not trust (CHAIN_UNTRUSTED)', async () => {
    const other = await startTestServer({ keyring: samples.keys.secondRootCert });
    try {
      const r = await other.api<{ code: string }>('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('CHAIN_UNTRUSTED');
      expect(await readdir(join(other.dir, 'packs'))).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('refuses every upload with KEYRING_EMPTY while no vendor root is trusted', async () => {
    const bare = await startTestServer();
    try {
      const r = await bare.api<{ code: string }>('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('KEYRING_EMPTY');
    } finally {
      await bare.close();
    }
  });
});

describe('GET /api/v1/packs', () => {
  it('lists the packs and shows one with its manifest and release notes', async () => {
    const list = await s.api<{ sha256: string; version: string }[]>('GET', '/api/v1/packs', { token: viewer });
    expect(list.status).toBe(200);
    expect(list.body.map((p) => p.version).sort()).toEqual(['1.0.0', '1.1.0']);
    const id = await sha(samples.packs['1.1.0']);
    const one = await s.api<{ manifest: { payloads: unknown[] }; releaseNotes: string | null }>('GET', `/api/v1/packs/${id}`, { token: viewer });
    expect(one.status).toBe(200);
    expect(one.body.manifest.payloads.length).toBe(3);
    expect(typeof one.body.releaseNotes).toBe('string');
    expect(one.body.releaseNotes!.length).toBeGreaterThan(0);
  });

  it('answers 404 PACK_NOT_FOUND for a well-formed id it does not hold', async () => {
    const r = await s.api<{ code: string }>('GET', `/api/v1/packs/${'0'.repeat(64)}`, { token: viewer });
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('PACK_NOT_FOUND');
  });
});

describe('GET /api/v1/packs/{sha256}/content', () => {
  let id: string;
  let bytes: Buffer;
  beforeAll(async () => {
    bytes = await readFile(samples.packs['1.1.0']);
    id = await sha(samples.packs['1.1.0']);
  });

  it('sends the whole pack with its ETag and Accept-Ranges', async () => {
    const r = await s.api('GET', `/api/v1/packs/${id}/content`, { token: viewer });
    expect(r.status).toBe(200);
    expect(r.raw).toEqual(bytes);
    expect(r.headers['etag']).toBe(`"${id}"`);
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(Number(r.headers['content-length'])).toBe(bytes.length);
  });

  it.each([
    { range: 'bytes=100-', start: 100, end: -1 },
    { range: 'bytes=0-99', start: 0, end: 99 },
    { range: 'bytes=-50', start: -50, end: -1 },
    { range: 'bytes=1000-999999999', start: 1000, end: -1 },
  ])('answers $range with 206 and exactly those bytes', async ({ range, start, end }) => {
    const r = await s.api('GET', `/api/v1/packs/${id}/content`, { token: viewer, headers: { range } });
    expect(r.status).toBe(206);
    const from = start < 0 ? bytes.length + start : start;
    const to = end < 0 ? bytes.length - 1 : end;
    expect(r.raw).toEqual(bytes.subarray(from, to + 1));
    expect(r.headers['content-range']).toBe(`bytes ${from}-${to}/${bytes.length}`);
  });

  it('answers a range past the end with 416 and the size', async () => {
    const r = await s.api<{ code: string }>('GET', `/api/v1/packs/${id}/content`, { token: viewer, headers: { range: `bytes=${bytes.length}-` } });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe(`bytes */${bytes.length}`);
    expect(r.body.code).toBe('RANGE_NOT_SATISFIABLE');
  });

  it('lets a probe fetch a pack a command to it names, and no other', async () => {
    const creds = await s.enroll('fetcher');
    const before = await s.api('GET', `/api/v1/packs/${id}/content`, { token: creds.token });
    expect(before.status).toBe(403);
    const sent = await s.api('POST', '/api/v1/probes/fetcher/commands', { token: operator, body: { type: 'install', packSha256: id } });
    expect(sent.status).toBe(202);
    const after = await s.api('GET', `/api/v1/packs/${id}/content`, { token: creds.token, headers: { range: 'bytes=10-' } });
    expect(after.status).toBe(206);
    expect(after.raw).toEqual(bytes.subarray(10));
    const unauthenticated = await s.api('GET', `/api/v1/packs/${id}/content`, { token: null });
    expect(unauthenticated.status).toBe(401);
  });
});

describe('deleting and garbage-collecting packs', () => {
  it('refuses to delete a pack an unfinished command needs (409 PACK_IN_USE), and deletes it once the probe refused it', async () => {
    const id = await sha(samples.packs['1.1.0']);
    const r = await s.api<{ code: string; message: string }>('DELETE', `/api/v1/packs/${id}`, { token: operator });
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('PACK_IN_USE');
    // The probe refuses the command: it no longer holds the pack.
    const creds = await s.enroll('fetcher');
    const probe = await SimProbe.connect(s.mqttUrl, creds);
    try {
      const commands = (await s.api<{ commands: { commandId: string }[] }>('GET', '/api/v1/probes/fetcher', { token: viewer })).body.commands;
      for (const c of commands) await probe.event('command-refused', { commandId: c.commandId, code: 'COMMAND_BUSY' });
      await s.settle();
    } finally {
      await probe.close();
    }
    const again = await s.api('DELETE', `/api/v1/packs/${id}`, { token: operator });
    expect(again.status).toBe(204);
    expect(await readdir(join(s.dir, 'packs'))).not.toContain(`${id}.spk`);
    expect((await s.api('GET', `/api/v1/packs/${id}`, { token: viewer })).status).toBe(404);
  });

  it('collects every pack nothing holds, keeping a pinned one', async () => {
    expect((await upload(samples.packs['1.0.0'])).status).toBe(201);
    const keep = await sha(samples.packs['1.0.0']);
    await s.server.context.store.packs.pin(keep, 'rollout:test');
    const dry = await s.api<{ deleted: string[] }>('POST', '/api/v1/packs/gc', { body: { olderThanSeconds: 0, dryRun: true } });
    expect(dry.status).toBe(200);
    const license = await sha(samples.packs.license);
    expect(dry.body.deleted).toEqual([license]);
    expect(await readdir(join(s.dir, 'packs'))).toContain(`${license}.spk`);
    const real = await s.api<{ deleted: string[] }>('POST', '/api/v1/packs/gc', { body: { olderThanSeconds: 0 } });
    expect(real.body.deleted).toEqual([license]);
    expect(await readdir(join(s.dir, 'packs'))).toEqual([`${keep}.spk`]);
  });

  it('needs the admin role to collect (an operator gets 403)', async () => {
    const r = await s.api<{ code: string }>('POST', '/api/v1/packs/gc', { token: operator, body: {} });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('FORBIDDEN');
  });
});
