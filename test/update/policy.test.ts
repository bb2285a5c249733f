import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../pack/src/manifest.js';
import type { Engine } from '../../agent/src/update/engine.js';
import type { EngineOptions } from '../../agent/src/update/context.js';
import { UPDATE_CODES } from '../../agent/src/update/errors.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { requiredBytes, type PolicyFacts } from '../../agent/src/update/policy.js';
import { CREATED, facts, manifest, MiB, product, refusal } from '../helpers/policy-facts.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { storeRecipientKey } from '../../agent/src/update/probe-keys.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { appStatus, probeState, seedConfig, stagingLeftovers } from '../helpers/probe-state.js';
import { openEngine, sharedSamples, stopApp } from '../helpers/probe.js';
import { packCreatedAt, variantPack } from '../helpers/sample-variants.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * Policy checks (DESIGN.md, "Policy checks happen before staging"): every refusal has its own
 * documented code, and a refused pack leaves the probe exactly as it was.
 */

const REFUSALS: { code: string; why: string; facts: PolicyFacts; message: RegExp }[] = [
  { code: 'POLICY_INCOMPATIBLE_MODEL', why: 'the probe is another model', facts: facts({ model: 'probe-z9' }), message: /probe-z9.*probe-x1/ },
  { code: 'POLICY_PRODUCT_MISMATCH', why: 'the pack is for another product', facts: facts({ manifest: manifest({ product: 'other-app' }) }), message: /probe-app.*other-app/ },
  {
    code: 'POLICY_REQUIRES_UNMET',
    why: "the installed version is outside the servicepack's requires range",
    facts: facts({ installed: { product: 'probe-app', version: '0.9.0', securityVersion: 1 } }),
    message: />=1\.0\.0 <1\.1\.0.*0\.9\.0/,
  },
  { code: 'POLICY_NO_BASE_RELEASE', why: 'a servicepack meets a probe with no release', facts: facts({ installed: null }), message: /none/ },
  {
    code: 'POLICY_DOWNGRADE',
    why: 'the version is older than the installed one, without a signed allowance',
    facts: facts({ manifest: product({ version: '1.0.1' }), installed: { product: 'probe-app', version: '1.1.0', securityVersion: 1 } }),
    message: /1\.0\.1.*1\.1\.0/,
  },
  {
    code: 'POLICY_SECURITY_DOWNGRADE',
    why: 'the securityVersion is below the floor',
    facts: facts({ manifest: manifest({ securityVersion: 0 }), securityFloor: 1 }),
    message: /securityVersion 0.*floor 1/,
  },
  {
    code: 'POLICY_STALE_PACK',
    why: 'the pack was created before one of the same securityVersion already installed',
    facts: facts({ newestCreatedAtSameSecurity: '2025-04-01T00:00:00.000Z' }),
    message: /2025-03-01.*2025-04-01/,
  },
  { code: 'POLICY_AGENT_TOO_OLD', why: 'the pack needs a newer agent', facts: facts({ manifest: manifest({ minAgentVersion: '99.0.0' }) }), message: /99\.0\.0.*0\.1\.0/ },
  {
    code: 'POLICY_DISK_SPACE',
    why: 'free disk is below what the install needs',
    facts: facts({ freeBytes: 10 * MiB, requiredBytes: 100 * MiB }),
    message: /100 MiB.*10 MiB/,
  },
  { code: 'POLICY_BUSY', why: 'the app asked not to be interrupted', facts: facts({ busyReason: 'calibrating link 3' }), message: /calibrating link 3/ },
  {
    code: 'POLICY_MAINTENANCE_WINDOW',
    why: 'it is outside the maintenance window',
    facts: facts({ maintenanceWindow: { start: '22:00', end: '04:00' } }),
    message: /22:00-04:00/,
  },
  {
    code: 'ALREADY_INSTALLED',
    why: 'the same version of the product is installed (a duplicate drop)',
    facts: facts({ manifest: product({ version: '1.0.0' }) }),
    message: /probe-app 1\.0\.0 is already installed/,
  },
];

describe('checkPolicy', () => {
  it.each(REFUSALS)('refuses with $code when $why', ({ code, facts: f, message }) => {
    const e = refusal(f);
    expect(e?.code).toBe(code);
    expect(e?.message).toMatch(message);
  });

  it('has a refusal case for every POLICY_* code and ALREADY_INSTALLED, each raised by exactly one case', () => {
    const policyCodes = UPDATE_CODES.filter((c) => c.startsWith('POLICY_') || c === 'ALREADY_INSTALLED');
    expect(REFUSALS.map((r) => r.code).sort()).toEqual([...policyCodes].sort());
  });

  it('refuses a replayed licence or trust pack, created before the one of its kind already applied, with POLICY_STALE_PACK', () => {
    for (const kind of ['license', 'trust'] as const) {
      const e = refusal(facts({ manifest: manifest({ kind }), newestAppliedSameKind: '2025-04-01T00:00:00.000Z' }));
      expect(e?.code, kind).toBe('POLICY_STALE_PACK');
      expect(e?.message, kind).toMatch(new RegExp(`${kind} pack was created 2025-03-01.*2025-04-01`));
      expect(refusal(facts({ manifest: manifest({ kind }), newestAppliedSameKind: '2025-03-01T00:00:00.000Z' })), kind).toBeNull();
    }
  });

  it('passes a compatible, newer, current servicepack on an idle probe with room, inside its window', () => {
    expect(refusal(facts({ maintenanceWindow: { start: '11:00', end: '13:00' } }))).toBeNull();
  });

  it('lets a fresh probe (no model, no release) take its first product', () => {
    expect(refusal(facts({ manifest: product({ version: '1.0.0' }), model: null, installed: null, securityFloor: 0, newestCreatedAtSameSecurity: null }))).toBeNull();
  });

  it('lets a pack whose signed downgrade allowance names the installed release go below its version', () => {
    const m = product({ version: '1.0.0', securityVersion: 1, allowDowngrade: true, downgradeFrom: '1.1.0' });
    expect(refusal(facts({ manifest: m, installed: { product: 'probe-app', version: '1.1.0', securityVersion: 1 } }))).toBeNull();
  });

  it('voids a downgrade allowance replayed against another release, or one that names none (POLICY_DOWNGRADE)', () => {
    const installed = { product: 'probe-app', version: '1.2.0', securityVersion: 1 };
    const forOther = refusal(facts({ manifest: product({ version: '1.0.0', securityVersion: 1, allowDowngrade: true, downgradeFrom: '1.1.0' }), installed }));
    expect(forOther?.code).toBe('POLICY_DOWNGRADE');
    expect(forOther?.message).toMatch(/for 1\.1\.0 only/);
    const unnamed = refusal(facts({ manifest: product({ version: '1.0.0', securityVersion: 1, allowDowngrade: true }), installed }));
    expect(unnamed?.code).toBe('POLICY_DOWNGRADE');
    expect(unnamed?.message).toMatch(/names no release/);
  });

  it('never lets a downgrade allowance cross the security floor (POLICY_SECURITY_DOWNGRADE)', () => {
    const m = product({ version: '1.0.0', securityVersion: 0, allowDowngrade: true, downgradeFrom: '1.1.0' });
    expect(refusal(facts({ manifest: m, installed: { product: 'probe-app', version: '1.1.0', securityVersion: 1 } }))?.code).toBe('POLICY_SECURITY_DOWNGRADE');
  });

  it('treats a duplicate drop of a servicepack as ALREADY_INSTALLED, not as an unmet requires range', () => {
    // 1.1.0 requires >=1.0.0 <1.1.0, which excludes itself: a re-drop must still say "nothing to do".
    const e = refusal(facts({ installed: { product: 'probe-app', version: '1.1.0', securityVersion: 1 } }));
    expect(e?.code).toBe('ALREADY_INSTALLED');
  });

  it('checks licence and trust packs for model and agent only, not for versions or requires', () => {
    for (const kind of ['license', 'trust'] as const) {
      const m = manifest({ kind, version: '0.0.1', securityVersion: 0 });
      expect(refusal(facts({ manifest: m, installed: null }))).toBeNull();
      expect(refusal(facts({ manifest: m, model: 'probe-z9' }))?.code).toBe('POLICY_INCOMPATIBLE_MODEL');
      expect(refusal(facts({ manifest: { ...m, minAgentVersion: '99.0.0' } }))?.code).toBe('POLICY_AGENT_TOO_OLD');
    }
  });

  it('passes a pack created at the same instant as the newest installed one (only older is stale)', () => {
    expect(refusal(facts({ newestCreatedAtSameSecurity: CREATED }))).toBeNull();
  });
});

describe('requiredBytes', () => {
  it('counts every payload unpacked, two database copies and a margin', () => {
    const payload = (unpackedSize: number): Manifest['payloads'][number] => ({
      name: `p${unpackedSize}`,
      type: 'data',
      file: 'payloads/01-p',
      size: 1,
      sha256: '0'.repeat(64),
      unpackedSize,
      fileCount: 1,
      compression: 'none',
    });
    const m = manifest({ payloads: [payload(3 * MiB), payload(7 * MiB)] });
    expect(requiredBytes(m, 5 * MiB)).toBe(Math.ceil((10 * MiB + 10 * MiB) * 1.1) + 16 * MiB);
    expect(requiredBytes(manifest(), 0)).toBe(16 * MiB);
  });
});

// -----------------------------------------------------------------------------------------------
// The same refusals, provoked for real on a probe whose app runs (writes paused through config).

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;
let port: number;
const variants: Record<string, string> = {};

async function install(pack: string, extra: Partial<EngineOptions> = {}, at = root): ReturnType<Engine['install']> {
  const engine = await openEngine(at, s, extra);
  try {
    return await engine.install(pack);
  } finally {
    engine.close();
  }
}

async function appPid(): Promise<string | null> {
  return readFile(join(layoutOf(root).run, 'app.pid'), 'utf8').catch(() => null);
}

function hhmm(d: Date): string {
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

beforeAll(async () => {
  tmp = await scratch('sonde-policy-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  root = join(tmp.dir, 'probe');
  port = await freePort();
  await seedConfig(root, { port, pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'policy-test-secret');
  const v = join(tmp.dir, 'variants');
  const created110 = await packCreatedAt(s.packs['1.1.0']);
  variants.otherProduct = await variantPack(s, v, 'other-product', '1.1.0', { recipe: { product: 'other-app' } });
  variants.agentTooOld = await variantPack(s, v, 'agent-too-old', '1.1.0', { recipe: { minAgentVersion: '99.0.0' } });
  variants.securityZero = await variantPack(s, v, 'security-zero', '1.1.1', { recipe: { securityVersion: 0 } });
  // Same securityVersion as 1.1.0 and a higher version, but created just before 1.1.0: a replay.
  variants.stale = await variantPack(s, v, 'stale', '1.1.1', { createdAt: new Date(created110.getTime() - 1) });
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

interface RealRefusal {
  code: string;
  why: string;
  pack: () => string;
  arrange?: () => Promise<void>;
  restore?: () => Promise<void>;
  options?: () => Partial<EngineOptions>;
}

async function expectRefused(c: RealRefusal): Promise<void> {
  await c.arrange?.();
  try {
    const before = await probeState(root);
    const pid = await appPid();
    expect(pid).not.toBeNull();
    const r = await install(c.pack(), c.options?.() ?? {});
    expect(r.committed).toBe(false);
    expect(r.deployment.state).toBe('failed');
    expect(r.deployment.errorCode).toBe(c.code);
    const receipt = JSON.parse(await readFile(join(layoutOf(root).receipts, `${r.deployment.id}.json`), 'utf8')) as {
      outcome: string;
      errorCode: string;
      transitions: { from: string | null; event: string | null; to: string }[];
    };
    expect(receipt.outcome).toBe('failed');
    expect(receipt.errorCode).toBe(c.code);
    // Refused while "received": nothing was verified-and-staged.
    expect(receipt.transitions.map((t) => `${t.from ?? ''}>${t.event ?? ''}>${t.to}`)).toEqual(['>>received', 'received>refused>failed']);
    expect(await probeState(root)).toEqual(before);
    expect(await stagingLeftovers(root)).toEqual([]);
    // The app was never stopped.
    expect(await appPid()).toBe(pid);
  } finally {
    await c.restore?.();
  }
}

const ON_1_0_0: RealRefusal[] = [
  {
    code: 'POLICY_INCOMPATIBLE_MODEL',
    why: 'probe.json names another model',
    pack: () => s.packs['1.1.0'],
    arrange: async () => writeFile(layoutOf(root).probeIdentity, `${JSON.stringify({ model: 'probe-z9' })}\n`),
    restore: async () => writeFile(layoutOf(root).probeIdentity, `${JSON.stringify({ model: 'probe-x1' }, null, 2)}\n`),
  },
  { code: 'POLICY_PRODUCT_MISMATCH', why: 'the pack is for other-app', pack: () => variants.otherProduct! },
  { code: 'POLICY_REQUIRES_UNMET', why: '1.1.1 requires >=1.1.0 and the probe runs 1.0.0', pack: () => s.packs['1.1.1'] },
  { code: 'POLICY_AGENT_TOO_OLD', why: 'the pack needs agent 99.0.0', pack: () => variants.agentTooOld! },
  {
    code: 'POLICY_BUSY',
    why: '<root>/run/inhibit exists',
    pack: () => s.packs['1.1.0'],
    arrange: async () => writeFile(layoutOf(root).inhibit, 'calibrating link 3\n'),
    restore: async () => rm(layoutOf(root).inhibit, { force: true }),
  },
  {
    code: 'POLICY_MAINTENANCE_WINDOW',
    why: 'the maintenance window excludes now',
    pack: () => s.packs['1.1.0'],
    options: () => {
      const now = Date.now();
      return { maintenanceWindow: { start: hhmm(new Date(now + 2 * 3600_000)), end: hhmm(new Date(now + 3 * 3600_000)) } };
    },
  },
  { code: 'ALREADY_INSTALLED', why: 'the 1.0.0 product is dropped again', pack: () => s.packs['1.0.0'] },
];

const ON_1_1_0: RealRefusal[] = [
  { code: 'ALREADY_INSTALLED', why: 'the 1.1.0 servicepack is dropped again', pack: () => s.packs['1.1.0'] },
  { code: 'POLICY_DOWNGRADE', why: 'the 1.0.0 product is offered over 1.1.0', pack: () => s.packs['1.0.0'] },
  { code: 'POLICY_SECURITY_DOWNGRADE', why: 'a newer 1.1.1 carries securityVersion 0 under floor 1', pack: () => variants.securityZero! },
  { code: 'POLICY_STALE_PACK', why: 'a 1.1.1 created before the installed 1.1.0, same securityVersion', pack: () => variants.stale! },
];

describe('install refusals on a real probe', () => {
  it('refuses a servicepack on a fresh root with POLICY_NO_BASE_RELEASE and writes nothing outside the state folder', async () => {
    const fresh = join(tmp.dir, 'fresh');
    await seedConfig(fresh, { port: await freePort() });
    // The probe's trust material (seeded from --keyring and --key on first use) in place and the
    // engine opened once, so that "before" already has all three.
    await mkdir(join(fresh, 'keyring'), { recursive: true });
    await writeFile(join(fresh, 'keyring', 'root.crt'), await readFile(s.keys.rootCert));
    await storeRecipientKey(layoutOf(fresh), await loadPrivateKey(s.keys.fleetKey));
    (await openEngine(fresh, s)).close();
    const tree = async (): Promise<Record<string, string>> =>
      Object.fromEntries(Object.entries(await treeDigest(fresh)).filter(([p]) => !p.startsWith('var/sonde/') && p !== 'var/sonde'));
    const before = await tree();
    const r = await install(s.packs['1.1.0'], {}, fresh);
    expect(r.deployment.state).toBe('failed');
    expect(r.deployment.errorCode).toBe('POLICY_NO_BASE_RELEASE');
    await readFile(join(layoutOf(fresh).receipts, `${r.deployment.id}.json`), 'utf8');
    expect(await tree()).toEqual(before);
    expect(before).not.toHaveProperty('current');
    expect(await stagingLeftovers(fresh)).toEqual([]);
  });

  it('installs the 1.0.0 product and starts its app with writes paused', async () => {
    const r = await install(s.packs['1.0.0']);
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    expect(await appStatus(port)).toMatchObject({ version: '1.0.0', paused: true });
  });

  it.each(ON_1_0_0)('on 1.0.0, refuses with $code when $why, and the probe is unchanged', (c) => expectRefused(c));

  it('passes every check with the probe idle, inside its window, and installs 1.1.0', async () => {
    const now = Date.now();
    const r = await install(s.packs['1.1.0'], { maintenanceWindow: { start: hhmm(new Date(now - 3600_000)), end: hhmm(new Date(now + 3600_000)) } });
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    expect(await appStatus(port)).toMatchObject({ version: '1.1.0', paused: true });
  });

  it.each(ON_1_1_0)('on 1.1.0, refuses with $code when $why, and the probe is unchanged', (c) => expectRefused(c));
});
