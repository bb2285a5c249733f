import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPack } from '../../pack/src/index.js';
import { Journal } from '../../agent/src/update/journal.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { probeState, seedConfig } from '../helpers/probe-state.js';
import { openEngine, sharedSamples, stopApp } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * The trusted time floor on a probe: raised by every pack committed, never lowered, shown by
 * `sonde agent status --json` with the keyring's revocation sequence, and applied by the engine
 * to the next pack's certificates.
 */
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));

function statusJson(root: string): Promise<{ trust: { roots: number; revocationSequence: number | null; timeFloor: string | null } }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'agent', 'status', '--root', root, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`status exited ${code}`))));
  });
}

async function createdAtOf(pack: string): Promise<string> {
  const p = await readPack(pack);
  try {
    return new Date(p.claimedManifest().createdAt).toISOString();
  } finally {
    await p.close();
  }
}

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;

beforeAll(async () => {
  tmp = await scratch('sonde-time-floor-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  root = join(tmp.dir, 'probe');
  await seedConfig(root, { port: await freePort(), pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'time-floor-secret');
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

describe('the trusted time floor', () => {
  it('is raised to the createdAt of each pack committed, and status shows it with the keyring', async () => {
    expect((await statusJson(root)).trust).toMatchObject({ roots: 0, revocationSequence: null, timeFloor: null });
    const engine = await openEngine(root, s);
    try {
      expect((await engine.install(s.packs['1.0.0'])).committed).toBe(true);
    } finally {
      engine.close();
    }
    expect((await statusJson(root)).trust).toEqual({ roots: 1, rootRotation: 0, revocationSequence: null, timeFloor: await createdAtOf(s.packs['1.0.0']), keyringError: null });
  });

  it('is never lowered', () => {
    const journal = new Journal(layoutOf(root).journal);
    try {
      const floor = journal.timeFloor()!;
      journal.raiseTimeFloor('2020-01-01T00:00:00Z');
      expect(journal.timeFloor()).toEqual(floor);
    } finally {
      journal.close();
    }
  });

  it('refuses a pack whose signer expired before it, probe unchanged (CERT_EXPIRED_BEFORE_FLOOR)', async () => {
    // As if the probe had accepted a pack created after the sample signer's end.
    const journal = new Journal(layoutOf(root).journal);
    journal.raiseTimeFloor('2199-01-01T00:00:00Z');
    journal.close();
    const before = await probeState(root);
    const engine = await openEngine(root, s);
    try {
      const r = await engine.install(s.packs['1.1.0']);
      expect(r.committed).toBe(false);
      expect(r.deployment).toMatchObject({ outcome: 'failed', errorCode: 'CERT_EXPIRED_BEFORE_FLOOR' });
    } finally {
      engine.close();
    }
    expect(await probeState(root)).toEqual(before);
    expect((await statusJson(root)).trust.timeFloor).toBe('2199-01-01T00:00:00.000Z');
  });
});
