import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { sonde } from '../helpers/probe-state.js';
import { serverSamples, startTestServer, tempDir, type TestServer } from '../server/harness.js';

/**
 * One `--json` envelope across every part of the CLI (issue 23; docs/cli-guide.md "JSON output"):
 * one object on one line, `ok` true with the result, or false with a documented code and a
 * message and a non-zero exit. Commands of each part, succeeding and failing.
 */
let samples: SamplePaths;
let s: TestServer;
let dir: string;

beforeAll(async () => {
  samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  expect((await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) })).status).toBe(201);
  dir = await tempDir('sonde-json-envelope-');
});
afterAll(() => s.close());

interface Envelope {
  ok: boolean;
  code?: string;
  message?: string;
  [k: string]: unknown;
}

async function envelope(args: string[], env: Record<string, string> = {}): Promise<{ code: number; e: Envelope }> {
  const r = await sonde([...args, '--json'], '', undefined, { SONDE_SERVER: s.url, SONDE_TOKEN: s.admin, ...env });
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  expect(lines, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toHaveLength(1);
  const e = JSON.parse(lines[0]!) as Envelope;
  expect(typeof e.ok).toBe('boolean');
  expect(Array.isArray(e)).toBe(false);
  if (e.ok) {
    expect(r.code, r.stderr).toBe(0);
  } else {
    expect(r.code).not.toBe(0);
    expect(e.code).toMatch(/^[A-Z][A-Z0-9_]+$/);
    expect(typeof e.message).toBe('string');
    // The same code on stderr, for a human.
    expect(r.stderr).toContain(e.code!);
  }
  return { code: r.code, e };
}

describe('the --json envelope', () => {
  it('succeeds the same way in every part: vendor tools, probe, staff, lab', async () => {
    expect((await envelope(['keys', 'init-ca', '--dir', join(dir, 'k'), '--name', 'Envelope Root'])).e).toMatchObject({ ok: true });
    expect((await envelope(['inspect', samples.packs['1.0.0']])).e).toMatchObject({ ok: true, verified: false });
    expect((await envelope(['verify', samples.packs['1.0.0'], '--keyring', samples.keys.rootCert])).e).toMatchObject({ ok: true, verdict: 'trusted' });
    const packs = (await envelope(['packs'])).e;
    expect(packs).toMatchObject({ ok: true });
    expect(packs['packs']).toHaveLength(1);
    expect((await envelope(['probes'])).e).toMatchObject({ ok: true, probes: [], total: 0 });
    expect((await envelope(['rollout', 'status'])).e).toMatchObject({ ok: true, rollouts: [] });
    expect((await envelope(['lab', 'ls', '--lab', 'envnone'])).e).toMatchObject({ ok: true, exists: false, probes: [] });
  });

  it('fails the same way in every part: a documented code, a message, a non-zero exit', async () => {
    expect((await envelope(['verify', samples.packs['1.0.0'], '--keyring', samples.keys.secondRootCert])).e).toMatchObject({ ok: false, code: 'CHAIN_UNTRUSTED', verdict: 'rejected' });
    expect((await envelope(['probe', 'no-such-probe'])).e).toMatchObject({ ok: false, code: 'PROBE_NOT_FOUND' });
    expect((await envelope(['packs'], { SONDE_TOKEN: 'x'.repeat(43) })).e).toMatchObject({ ok: false, code: 'AUTH_REQUIRED' });
    const usage = await envelope(['rollback']);
    expect(usage).toMatchObject({ code: 2, e: { ok: false, code: 'USAGE' } });
    expect((await envelope(['agent', 'status', '--root', join(dir, 'not-a-probe')])).e).toMatchObject({ ok: false, code: 'NOT_A_PROBE_ROOT' });
    expect((await envelope(['keys', 'issue-signer', '--dir', join(dir, 'no-keys')])).e).toMatchObject({ ok: false });
  });
});
