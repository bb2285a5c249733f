import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyOp, applyTemplate, getPath, loadConfigMigrations, migrateConfig, type ConfigDoc, type ConfigMigration } from '../../agent/src/update/config-ops.js';
import { scratch } from '../helpers/packs.js';
import { thrown } from '../helpers/thrown.js';

/**
 * Config migration and template merge, beyond units.test.ts: a pack's config ops and template come
 * from a signed release, but a mistake in one (or a vendor key used carelessly) must never reach
 * the agent's own objects, and the order and merge rules are what a probe's config depends on.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-config-ops-');
});
afterAll(() => tmp.cleanup());

async function opsDir(name: string, files: Record<string, unknown>): Promise<string> {
  const dir = join(tmp.dir, name);
  await mkdir(dir, { recursive: true });
  for (const [file, body] of Object.entries(files)) await writeFile(join(dir, file), typeof body === 'string' ? body : JSON.stringify(body));
  return dir;
}

describe('a config op cannot pollute the prototype', () => {
  const probes = ['__proto__.polluted', 'constructor.prototype.polluted', 'a.__proto__.polluted', 'prototype'];

  it('refuses a set, default, rename or remove whose path names __proto__, constructor or prototype, and changes nothing', () => {
    for (const path of probes) {
      const doc: ConfigDoc = { a: { b: 1 } };
      for (const op of [
        { op: 'set', path, value: 'yes' },
        { op: 'default', path, value: 'yes' },
        { op: 'remove', path },
        { op: 'rename', from: 'a.b', to: path },
        { op: 'rename', from: path, to: 'a.c' },
      ] as const) {
        const e = thrown(() => applyOp(doc, op));
        expect(e.code).toBe('CONFIG_INVALID');
        expect(e.message).toContain('prototype');
      }
      expect(doc).toEqual({ a: { b: 1 } });
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('refuses an ops file that names __proto__ when it is loaded, before any op runs', async () => {
    const dir = await opsDir('proto', { '0002-attack.json': '[{"op":"set","path":"__proto__.polluted","value":true}]' });
    await expect(loadConfigMigrations(dir)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('__proto__') });
    const ctor = await opsDir('ctor', { '0002-attack.json': [{ op: 'default', path: 'constructor.prototype.polluted', value: true }] });
    await expect(loadConfigMigrations(ctor)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('refuses a release template with a __proto__ key, at the top or nested, and leaves the config alone', () => {
    const existing: ConfigDoc = { port: 1, nested: { kept: true } };
    for (const text of ['{"__proto__":{"polluted":true}}', '{"nested":{"__proto__":{"polluted":true}}}', '{"constructor":{"prototype":{"polluted":true}}}']) {
      const template = JSON.parse(text) as ConfigDoc;
      expect(thrown(() => applyTemplate(existing, template)).code).toBe('CONFIG_INVALID');
    }
    expect(existing).toEqual({ port: 1, nested: { kept: true } });
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('still accepts keys that merely contain those words', () => {
    const doc: ConfigDoc = {};
    applyOp(doc, { op: 'set', path: 'proto.constructorName', value: 'x' });
    applyOp(doc, { op: 'set', path: 'prototypes', value: 2 });
    expect(doc).toEqual({ proto: { constructorName: 'x' }, prototypes: 2 });
  });
});

describe('config migration order', () => {
  it('applies migrations given out of order by version, so a later rename sees what an earlier set wrote', () => {
    const migrations: ConfigMigration[] = [
      { version: 5, name: 'rename', ops: [{ op: 'rename', from: 'poll', to: 'measurements.intervalMs' }] },
      { version: 3, name: 'set', ops: [{ op: 'set', path: 'poll', value: 250 }] },
    ];
    expect(migrateConfig({}, migrations, 0)).toEqual({ doc: { configVersion: 5, measurements: { intervalMs: 250 } }, version: 5 });
  });

  it('orders files by their number, not by the order the folder lists them, and reads a number that is only part of a name as no number', async () => {
    const dir = await opsDir('order', {
      '0010-ten.json': [{ op: 'set', path: 'who', value: 'ten' }],
      '0009-nine.json': [{ op: 'set', path: 'who', value: 'nine' }],
    });
    const loaded = await loadConfigMigrations(dir);
    expect(loaded.map((m) => m.version)).toEqual([9, 10]);
    expect(migrateConfig({}, loaded, 0).doc.who).toBe('ten');
    for (const name of ['v0002-a.json', '0002-a.json.bak', '002-a.json', '0002_a.json', '0002-.json', '0002-A.json']) {
      const bad = await opsDir(`bad-${name}`, { [name]: [] });
      await expect(loadConfigMigrations(bad), name).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining(name) });
    }
  });

  it('refuses an op path that is not dot-separated plain keys, wherever the stray character is', async () => {
    for (const path of ['.a', 'a.', 'a b', 'a..b', 'a/b', '']) {
      const dir = await opsDir(`path-${Buffer.from(path).toString('hex')}`, { '0002-p.json': [{ op: 'set', path, value: 1 }] });
      await expect(loadConfigMigrations(dir), JSON.stringify(path)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('0002-p.json') });
    }
  });

  it('returns the files in version order even when the folder lists them otherwise', async () => {
    const files: Record<string, unknown> = {};
    // Written in a scrambled order: a folder often lists files in the order they were made.
    for (const v of Array.from({ length: 39 }, (_, i) => ((i * 17) % 39) + 2)) files[`${String(v).padStart(4, '0')}-v${v}.json`] = [{ op: 'set', path: 'v', value: v }];
    const loaded = await loadConfigMigrations(await opsDir('many', files));
    expect(loaded.map((m) => m.version)).toEqual(Array.from({ length: 39 }, (_, i) => i + 2));
  });

  it('treats a missing ops folder as no migration, but any other read error as an error', async () => {
    const file = join(tmp.dir, 'not-a-folder');
    await writeFile(file, 'x');
    await expect(loadConfigMigrations(file)).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('loads each of the four ops from a file', async () => {
    const dir = await opsDir('four', {
      '0002-all.json': [
        { op: 'set', path: 'a', value: 1 },
        { op: 'rename', from: 'a', to: 'b' },
        { op: 'default', path: 'c', value: 3 },
        { op: 'remove', path: 'c' },
      ],
    });
    const [m] = await loadConfigMigrations(dir);
    expect(m!.ops.map((o) => o.op)).toEqual(['set', 'rename', 'default', 'remove']);
    expect(migrateConfig({}, [m!], 0).doc).toStrictEqual({ b: 1, configVersion: 2 });
  });

  it('names the path in every refusal of a path', () => {
    expect(thrown(() => applyOp({ a: { b: 1 } }, { op: 'rename', from: 'a.b', to: 'x.__proto__' })).message).toContain('config path x.__proto__');
    expect(thrown(() => applyOp({ port: 1 }, { op: 'set', path: 'port.n', value: 1 })).message).toContain('config path port.n');
    expect(thrown(() => applyOp({}, { op: 'set', path: 'x.__proto__', value: 1 })).message).toContain('config path x.__proto__');
    expect(thrown(() => applyOp({ a: 1, b: 2 }, { op: 'rename', from: 'a', to: 'b.c' })).message).toContain('config path b.c');
    expect(thrown(() => applyTemplate({}, JSON.parse('{"__proto__":{}}') as ConfigDoc)).message).toContain('the release template');
  });

  it('stops at the first op that cannot apply and leaves the caller\'s document as it was', () => {
    const input: ConfigDoc = { port: 8080 };
    const migrations: ConfigMigration[] = [{ version: 2, name: 'bad', ops: [{ op: 'set', path: 'ok', value: 1 }, { op: 'set', path: 'port.n', value: 1 }] }];
    expect(thrown(() => migrateConfig(input, migrations, 1)).code).toBe('CONFIG_INVALID');
    expect(input).toEqual({ port: 8080 });
  });

  it('a rename onto a value that is not an object is refused before anything moves; a rename of a missing key or one under a scalar is a no-op', () => {
    for (const [doc, to] of [
      [{ a: 1, b: 2 }, 'b.c'],
      [{ a: 1, b: { c: 5 } }, 'b.c.d'],
      [{ a: 1, b: [1] }, 'b.c'],
      [{ a: 1, b: null }, 'b.c'],
    ] as [ConfigDoc, string][]) {
      const before = structuredClone(doc);
      expect(thrown(() => applyOp(doc, { op: 'rename', from: 'a', to })).code).toBe('CONFIG_INVALID');
      expect(doc).toStrictEqual(before);
    }
    const onto: ConfigDoc = { a: { deep: true }, x: 5 };
    applyOp(onto, { op: 'rename', from: 'a', to: 'x' });
    expect(onto).toStrictEqual({ x: { deep: true } });
    const into: ConfigDoc = { a: 1 };
    applyOp(into, { op: 'rename', from: 'a', to: 'n.m' });
    expect(into).toStrictEqual({ n: { m: 1 } });
    const absent: ConfigDoc = { a: 1 };
    applyOp(absent, { op: 'rename', from: 'missing', to: 'c' });
    expect(absent).toStrictEqual({ a: 1 });
    expect(getPath({ a: { b: 1 } }, 'a.b')).toBe(1);
    expect(getPath({ a: { b: 1 } }, 'a')).toStrictEqual({ b: 1 });
    const doc: ConfigDoc = { a: 1 };
    applyOp(doc, { op: 'rename', from: 'a.b', to: 'c' });
    applyOp(doc, { op: 'remove', path: 'a.b' });
    expect(doc).toEqual({ a: 1 });
    expect(getPath(doc, 'a.b')).toBeUndefined();
    expect(getPath({ a: null }, 'a.b')).toBeUndefined();
    expect(getPath({ a: [1] }, 'a.0')).toBeUndefined();
  });

  it('default keeps a value that is present but falsy', () => {
    const doc: ConfigDoc = { n: 0, s: '', f: false, z: null };
    for (const path of ['n', 's', 'f', 'z']) applyOp(doc, { op: 'default', path, value: 'x' });
    expect(doc).toEqual({ n: 0, s: '', f: false, z: null });
  });
});

describe('template merge', () => {
  it('adds a template key nested under an object the operator made, keeping the operator\'s keys', () => {
    const existing: ConfigDoc = { collector: { user: 'operator', extra: { mine: 1 } } };
    const template: ConfigDoc = { collector: { user: 'probe', password: '#{P}', extra: { theirs: 2, mine: 9 } } };
    expect(applyTemplate(existing, template)).toEqual({ collector: { user: 'operator', password: '#{P}', extra: { mine: 1, theirs: 2 } } });
  });

  it('never merges into an array, and never replaces a value of another type the operator set', () => {
    const existing: ConfigDoc = { list: [1], scalar: 'x', obj: { a: 1 }, nul: null, other: { b: 1 } };
    const template: ConfigDoc = { list: { a: 1 }, scalar: { a: 1 }, obj: [2], nul: { a: 1 }, other: 'str' };
    expect(applyTemplate(existing, template)).toStrictEqual(existing);
    expect(applyTemplate({ list: { a: 1 } }, { list: [2] })).toEqual({ list: { a: 1 } });
  });

  it('copies the template, so a later change to the result does not reach the template', () => {
    const template: ConfigDoc = { deep: { list: [1] } };
    const out = applyTemplate({}, template);
    ((out.deep as ConfigDoc).list as number[]).push(2);
    expect(template).toEqual({ deep: { list: [1] } });
  });
});
