import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest, PayloadType } from '../../pack/src/manifest.js';
import {
  applyOp,
  applyTemplate,
  configVersionOf,
  getPath,
  loadConfigMigrations,
  migrateConfig,
  type ConfigDoc,
  type ConfigMigration,
} from '../../agent/src/update/config-ops.js';
import { EVENTS, MAX_RESUMES, OUTCOMES, RESUME, STATES, TRANSITIONS, isOutcome, mayHaveSwitched, next } from '../../agent/src/update/machine.js';
import { loadMigrations, planMigrations, type Migration } from '../../agent/src/update/migrations.js';
import { planInstall } from '../../agent/src/update/plan.js';
import { insideWindow } from '../../agent/src/update/policy.js';
import { fillTemplate, isVarName, referencedVars } from '../../agent/src/update/site-vars.js';
import { CONFIG_OPS_0002, CONFIG_OPS_0003, CONFIG_TEMPLATE_V1 } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { thrown } from '../helpers/thrown.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-units-');
});
afterAll(() => tmp.cleanup());

describe('config ops', () => {
  it('set writes a value, creating the objects on its path, and replaces an existing one', () => {
    const doc: ConfigDoc = { a: 1 };
    applyOp(doc, { op: 'set', path: 'collector.password', value: 'x' });
    applyOp(doc, { op: 'set', path: 'a', value: { deep: [1, 2] } });
    expect(doc).toEqual({ a: { deep: [1, 2] }, collector: { password: 'x' } });
  });

  it('set copies its value, so a later change to the op does not reach the config', () => {
    const value = { list: [1] };
    const doc: ConfigDoc = {};
    applyOp(doc, { op: 'set', path: 'v', value });
    value.list.push(2);
    expect(doc).toEqual({ v: { list: [1] } });
  });

  it('rename moves a value to a new path and is a no-op when the source is absent', () => {
    const doc: ConfigDoc = { pollMs: 200, measurements: { paused: true } };
    applyOp(doc, { op: 'rename', from: 'pollMs', to: 'measurements.intervalMs' });
    expect(doc).toEqual({ measurements: { paused: true, intervalMs: 200 } });
    applyOp(doc, { op: 'rename', from: 'pollMs', to: 'elsewhere' });
    applyOp(doc, { op: 'rename', from: 'no.such.path', to: 'elsewhere' });
    expect(doc).toEqual({ measurements: { paused: true, intervalMs: 200 } });
  });

  it('remove deletes a value and ignores a missing one', () => {
    const doc: ConfigDoc = { legacyMode: false, keep: 1, nested: { x: 1, y: 2 } };
    applyOp(doc, { op: 'remove', path: 'legacyMode' });
    applyOp(doc, { op: 'remove', path: 'nested.x' });
    applyOp(doc, { op: 'remove', path: 'absent.deep' });
    expect(doc).toEqual({ keep: 1, nested: { y: 2 } });
  });

  it('default writes a value only where none exists', () => {
    const doc: ConfigDoc = { retentionDays: 7, alarms: { warningMs: 10 } };
    applyOp(doc, { op: 'default', path: 'retentionDays', value: 30 });
    applyOp(doc, { op: 'default', path: 'alarms.warningMs', value: 40 });
    applyOp(doc, { op: 'default', path: 'alarms.criticalMs', value: 80 });
    expect(doc).toEqual({ retentionDays: 7, alarms: { warningMs: 10, criticalMs: 80 } });
  });

  it('refuses to write through a value that is not an object (CONFIG_INVALID)', () => {
    expect(thrown(() => applyOp({ port: 8080 }, { op: 'set', path: 'port.number', value: 1 })).code).toBe('CONFIG_INVALID');
    expect(getPath({ port: 8080 }, 'port.number')).toBeUndefined();
  });

  it('migrateConfig applies only files above the current version, in order, stamping configVersion and leaving its input alone', () => {
    const migrations: ConfigMigration[] = [
      { version: 3, name: 'three', ops: [{ op: 'set', path: 'three', value: true }] },
      { version: 2, name: 'two', ops: [{ op: 'set', path: 'order', value: 'two' }] },
      { version: 4, name: 'four', ops: [{ op: 'set', path: 'order', value: 'four' }] },
    ];
    const input: ConfigDoc = { configVersion: 2, order: 'one' };
    const out = migrateConfig(input, migrations, 2);
    expect(out).toEqual({ doc: { configVersion: 4, order: 'four', three: true }, version: 4 });
    expect(input).toEqual({ configVersion: 2, order: 'one' });
    expect(migrateConfig(input, migrations, 4)).toEqual({ doc: input, version: 4 });
  });

  it('takes the sample 1.0.0 config through ops 0002 and 0003 to version 3', () => {
    const v1: ConfigDoc = { ...structuredClone(CONFIG_TEMPLATE_V1) } as ConfigDoc;
    const migrations = [CONFIG_OPS_0002, CONFIG_OPS_0003].map((f) => ({ version: f.version, name: f.name, ops: f.ops })) as ConfigMigration[];
    const { doc, version } = migrateConfig(v1, migrations, configVersionOf(v1));
    expect(version).toBe(3);
    expect(doc).toMatchObject({
      configVersion: 3,
      collector: { password: '#{CollectorPassword}', user: 'probe' },
      measurements: { paused: false, intervalMs: 200 },
      alarms: { warningMs: 40, criticalMs: 80 },
      targets: { referenceFile: 'targets-default.json' },
      retentionDays: 30,
    });
    expect(doc).not.toHaveProperty('pollMs');
    expect(doc).not.toHaveProperty('legacyMode');
  });

  it('configVersionOf reads an integer configVersion and calls anything else 0', () => {
    expect(configVersionOf({ configVersion: 3 })).toBe(3);
    expect(configVersionOf({ configVersion: '3' })).toBe(0);
    expect(configVersionOf({ configVersion: 2.5 })).toBe(0);
    expect(configVersionOf({})).toBe(0);
  });

  it('applyTemplate keeps every value the operator pre-seeded and adds the rest, deeply', () => {
    const seeded: ConfigDoc = { port: 18080, measurements: { paused: true }, extra: 'operator' };
    const out = applyTemplate(seeded, { ...structuredClone(CONFIG_TEMPLATE_V1) } as ConfigDoc);
    expect(out).toEqual({ ...CONFIG_TEMPLATE_V1, port: 18080, measurements: { paused: true }, extra: 'operator' });
    expect(seeded).toEqual({ port: 18080, measurements: { paused: true }, extra: 'operator' });
  });

  it('loads numbered ops files in order and refuses a misnamed or malformed one', async () => {
    const dir = join(tmp.dir, 'ops');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '0003-b.json'), JSON.stringify([{ op: 'remove', path: 'x' }]));
    await writeFile(join(dir, '0002-a.json'), JSON.stringify([{ op: 'set', path: 'x', value: 1 }]));
    expect((await loadConfigMigrations(dir)).map((m) => [m.version, m.name])).toEqual([
      [2, 'a'],
      [3, 'b'],
    ]);
    expect(await loadConfigMigrations(join(tmp.dir, 'no-such-dir'))).toEqual([]);
    await writeFile(join(dir, '0004-c.json'), JSON.stringify([{ op: 'set', path: 'x', value: 1, extra: true }]));
    await expect(loadConfigMigrations(dir)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('0004-c.json') });
    const bad = join(tmp.dir, 'ops-bad-name');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'two.json'), '[]');
    await expect(loadConfigMigrations(bad)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('fillTemplate', () => {
  const SECRET = 'hunter2-Do-Not-Print';

  it('fills every #{Name} in strings, arrays and nested objects, leaving other values alone', () => {
    const doc = { a: 'user:#{User} pass:#{Pass}', list: ['#{Pass}', 3], nested: { p: '#{Pass}', n: null, b: true } };
    expect(fillTemplate(doc, { User: 'probe', Pass: SECRET })).toEqual({
      a: `user:probe pass:${SECRET}`,
      list: [SECRET, 3],
      nested: { p: SECRET, n: null, b: true },
    });
  });

  it('refuses with SITE_VARS_MISSING naming every missing variable, sorted, and no value', () => {
    const e = thrown(() => fillTemplate({ a: '#{Zeta}', b: '#{Alpha}', c: '#{Known}' }, { Known: SECRET }));
    expect(e.code).toBe('SITE_VARS_MISSING');
    expect(e.message).toContain('Alpha, Zeta');
    expect(e.message).not.toContain('Known');
    expect(e.message).not.toContain(SECRET);
  });

  it('finds references anywhere and ignores text that only looks like one', () => {
    expect(referencedVars({ a: ['#{B}', { c: 'x #{A} y #{B}' }], d: '#{1bad} #{} {Plain} #Name' })).toEqual(['A', 'B']);
  });

  it('does not re-expand a value that itself looks like a reference', () => {
    expect(fillTemplate({ a: '#{A}' }, { A: '#{B}', B: SECRET })).toEqual({ a: '#{B}' });
  });

  it('accepts only plain variable names', () => {
    expect(isVarName('CollectorPassword')).toBe(true);
    expect(isVarName('a_1')).toBe(true);
    for (const bad of ['1abc', '', 'has-dash', 'with space', 'x'.repeat(65), '../etc']) expect(isVarName(bad)).toBe(false);
  });
});

describe('planMigrations', () => {
  const m = (version: number, down: string | null = 'DOWN'): Migration => ({ version, name: `m${version}`, up: `UP ${version}`, down });
  const all = [m(1), m(2), m(3)];

  it('takes every migration above the database version, in order', () => {
    expect(planMigrations(all, 0).map((x) => x.version)).toEqual([1, 2, 3]);
    expect(planMigrations(all, 1).map((x) => x.version)).toEqual([2, 3]);
    expect(planMigrations(all, 3)).toEqual([]);
    expect(planMigrations([], 2)).toEqual([]);
  });

  it('loads NNNN-name.up.sql/.down.sql pairs in version order and refuses a broken set', async () => {
    const dir = join(tmp.dir, 'mig');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '0002-b.up.sql'), 'UP2');
    await writeFile(join(dir, '0001-a.up.sql'), 'UP1');
    await writeFile(join(dir, '0001-a.down.sql'), 'DOWN1');
    expect(await loadMigrations(dir)).toEqual([
      { version: 1, name: 'a', up: 'UP1', down: 'DOWN1' },
      { version: 2, name: 'b', up: 'UP2', down: null },
    ]);
    await writeFile(join(dir, '0003-c.down.sql'), 'DOWN3');
    await expect(loadMigrations(dir)).rejects.toMatchObject({ code: 'MIGRATION_FAILED', message: expect.stringContaining('3') });
    const clash = join(tmp.dir, 'mig-clash');
    await mkdir(clash, { recursive: true });
    await writeFile(join(clash, '0001-a.up.sql'), 'x');
    await writeFile(join(clash, '0001-b.up.sql'), 'y');
    await expect(loadMigrations(clash)).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
    const misnamed = join(tmp.dir, 'mig-misnamed');
    await mkdir(misnamed, { recursive: true });
    await writeFile(join(misnamed, 'init.sql'), 'x');
    await expect(loadMigrations(misnamed)).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
  });
});

describe('insideWindow', () => {
  const at = (h: number, min = 0): Date => new Date(2025, 5, 1, h, min);

  it('is inside from start (inclusive) to end (exclusive) on one day', () => {
    const w = { start: '02:00', end: '04:30' };
    expect(insideWindow(w, at(2, 0))).toBe(true);
    expect(insideWindow(w, at(4, 29))).toBe(true);
    expect(insideWindow(w, at(4, 30))).toBe(false);
    expect(insideWindow(w, at(1, 59))).toBe(false);
    expect(insideWindow(w, at(12))).toBe(false);
  });

  it('wraps across midnight', () => {
    const w = { start: '22:00', end: '04:00' };
    expect(insideWindow(w, at(22, 0))).toBe(true);
    expect(insideWindow(w, at(23, 59))).toBe(true);
    expect(insideWindow(w, at(0, 0))).toBe(true);
    expect(insideWindow(w, at(3, 59))).toBe(true);
    expect(insideWindow(w, at(4, 0))).toBe(false);
    expect(insideWindow(w, at(12))).toBe(false);
    expect(insideWindow(w, at(21, 59))).toBe(false);
  });

  it('refuses a time that is not HH:MM (CONFIG_INVALID)', () => {
    expect(thrown(() => insideWindow({ start: '2:00', end: '04:00' }, at(3))).code).toBe('CONFIG_INVALID');
  });
});

describe('planInstall', () => {
  const manifest = (kind: Manifest['kind'], types: PayloadType[]): Manifest => ({
    kind,
    product: 'probe-app',
    version: '1.1.0',
    compatible: ['probe-x1'],
    ...(kind === 'servicepack' ? { requires: '>=1.0.0' } : {}),
    securityVersion: 1,
    createdAt: '2025-03-01T10:00:00.000Z',
    payloads: types.map((type, i) => ({
      name: type,
      type,
      file: `payloads/${String(i + 1).padStart(2, '0')}-${type}`,
      size: 1,
      sha256: '0'.repeat(64),
      unpackedSize: 1,
      fileCount: 1,
      compression: 'none' as const,
    })),
  });

  it('puts a first product into slot a, every slot payload into the slot', () => {
    expect(planInstall(manifest('product', ['app', 'data', 'db', 'config', 'hooks']), null)).toEqual({
      kind: 'slot',
      activeSlot: null,
      targetSlot: 'a',
      slotPayloads: ['app', 'data', 'hooks', 'db', 'config'],
      inheritActive: false,
      migratesDb: true,
      migratesConfig: true,
      system: false,
    });
  });

  it('writes a system image into the other block slot, and refuses a system image on dir slots and anything else on block slots (RELEASE_INVALID)', () => {
    expect(planInstall(manifest('product', ['system']), 'a', 'block')).toEqual({ kind: 'slot', activeSlot: 'a', targetSlot: 'b', slotPayloads: [], inheritActive: false, migratesDb: true, migratesConfig: true, system: true });
    expect(thrown(() => planInstall(manifest('product', ['system']), 'a', 'dir')).code).toBe('RELEASE_INVALID');
    expect(thrown(() => planInstall(manifest('product', ['app', 'db']), 'a', 'block')).code).toBe('RELEASE_INVALID');
    expect(thrown(() => planInstall(manifest('product', ['system', 'db']), 'a', 'block')).code).toBe('RELEASE_INVALID');
    // Booted from no slot of the pair (no sonde.slot= on the command line): nothing is written.
    expect(thrown(() => planInstall(manifest('product', ['system']), null, 'block')).code).toBe('SYSTEM_BOOT_FAILED');
  });

  it('targets the inactive slot for a servicepack with an app', () => {
    expect(planInstall(manifest('servicepack', ['app', 'db']), 'a')).toMatchObject({ kind: 'slot', activeSlot: 'a', targetSlot: 'b', inheritActive: false, migratesDb: true, migratesConfig: false });
    expect(planInstall(manifest('servicepack', ['app']), 'b')).toMatchObject({ targetSlot: 'a', migratesDb: false });
  });

  it('makes a data- or config-only servicepack inherit the active slot', () => {
    expect(planInstall(manifest('servicepack', ['data', 'config']), 'b')).toEqual({
      kind: 'slot',
      activeSlot: 'b',
      targetSlot: 'a',
      slotPayloads: ['data', 'config'],
      inheritActive: true,
      migratesDb: false,
      migratesConfig: true,
      system: false,
    });
  });

  it('refuses a pack without an app on a probe with no release (POLICY_NO_BASE_RELEASE)', () => {
    expect(thrown(() => planInstall(manifest('servicepack', ['data']), null)).code).toBe('POLICY_NO_BASE_RELEASE');
  });

  it('refuses a product without an app (RELEASE_INVALID)', () => {
    expect(thrown(() => planInstall(manifest('product', ['data']), 'a')).code).toBe('RELEASE_INVALID');
  });

  it('plans licence and trust packs without a slot, and refuses them without their payload', () => {
    expect(planInstall(manifest('license', ['license']), 'a')).toEqual({ kind: 'license' });
    expect(planInstall(manifest('trust', ['trust']), null)).toEqual({ kind: 'trust' });
    expect(thrown(() => planInstall(manifest('license', ['data']), 'a')).code).toBe('RELEASE_INVALID');
    expect(thrown(() => planInstall(manifest('trust', []), 'a')).code).toBe('RELEASE_INVALID');
  });
});

describe('the install state machine', () => {
  it('has a RESUME entry for every state, and nothing else', () => {
    expect(Object.keys(RESUME).sort()).toEqual([...STATES].sort());
    for (const s of STATES) expect(['continue', 'roll-back']).toContain(RESUME[s]);
  });

  it('has a TRANSITIONS row for every state, whose events are events and whose targets are states', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...STATES].sort());
    for (const [from, row] of Object.entries(TRANSITIONS)) {
      for (const [event, to] of Object.entries(row)) {
        expect(EVENTS as readonly string[], `${from} on ${event}`).toContain(event);
        expect(STATES as readonly string[], `${from} on ${event}`).toContain(to);
      }
    }
  });

  it('reaches an outcome from every state, and an outcome only leads to itself', () => {
    for (const s of STATES) {
      const seen = new Set<string>([s]);
      const queue = [s];
      while (queue.length > 0) {
        for (const to of Object.values(TRANSITIONS[queue.shift()!])) {
          if (!seen.has(to)) {
            seen.add(to);
            queue.push(to);
          }
        }
      }
      expect([...seen].some((x) => (OUTCOMES as readonly string[]).includes(x)), s).toBe(true);
    }
    for (const o of OUTCOMES) {
      expect(isOutcome(o)).toBe(true);
      expect(new Set(Object.values(TRANSITIONS[o]))).toEqual(new Set([o]));
    }
    expect(STATES.filter(isOutcome).sort()).toEqual([...OUTCOMES].sort());
  });

  it('rolls back every state before the commit after a crash, and continues only undoing and finalising', () => {
    for (const s of STATES) expect(RESUME[s], s).toBe(isOutcome(s) || s === 'rolling-back' ? 'continue' : 'roll-back');
  });

  it('counts a probe as possibly switched from the switch on, rolled back included, and never before', () => {
    expect(STATES.filter(mayHaveSwitched)).toEqual(['switching', 'trial', 'rolling-back', 'rolled-back']);
  });

  it('turns an interruption into failed before the switch and into rolling-back once it may have switched', () => {
    for (const s of STATES.filter((x) => RESUME[x] === 'roll-back')) {
      expect(next(s, 'interrupted'), s).toBe(mayHaveSwitched(s) ? 'rolling-back' : 'failed');
    }
  });

  it('sends a policy refusal to failed without staging, and throws on an edge the table does not have', () => {
    expect(next('received', 'refused')).toBe('failed');
    expect(next('verified', 'applied')).toBe('committed');
    expect(() => next('committed', 'ok')).toThrow(/no transition from committed on ok/);
    expect(MAX_RESUMES).toBeGreaterThan(0);
  });
});
