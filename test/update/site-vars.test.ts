import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fillTemplate, isVarName, readSiteVars, referencedVars, setSiteVar, siteVarNames } from '../../agent/src/update/site-vars.js';
import { UpdateError } from '../../agent/src/update/errors.js';
import { scratch } from '../helpers/packs.js';
import { thrown } from '../helpers/thrown.js';

/**
 * Site variables beyond units.test.ts: the file that holds the operator's secrets (mode, errors
 * that never echo it) and names that only an object's prototype "has".
 */
const SECRET = 'canary-Site-Secret-7f3a';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-site-vars-');
});
afterAll(() => tmp.cleanup());

describe('a template that names what only the prototype has', () => {
  it('reads #{toString}, #{constructor} and #{hasOwnProperty} as missing, never as Object\'s own functions', () => {
    const e = thrown(() => fillTemplate({ a: '#{toString}', b: '#{constructor}', c: '#{hasOwnProperty}' }, { Known: SECRET }));
    expect(e.code).toBe('SITE_VARS_MISSING');
    expect(e.message).toContain('constructor, hasOwnProperty, toString');
  });

  it('fills such a name when the operator set it', () => {
    expect(fillTemplate({ a: '#{constructor}' }, JSON.parse('{"constructor":"ok"}') as Record<string, string>)).toEqual({ a: 'ok' });
  });
});

describe('the site variables file', () => {
  it('is written 0600, read back whole, and a second set keeps the first', async () => {
    const path = join(tmp.dir, 'a', 'deeper', 'site-vars.json');
    await setSiteVar(path, 'CollectorPassword', SECRET);
    await setSiteVar(path, 'Area', 'north');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readSiteVars(path)).toEqual({ CollectorPassword: SECRET, Area: 'north' });
    expect(await siteVarNames(path)).toEqual(['Area', 'CollectorPassword']);
    expect((await readFile(path, 'utf8')).endsWith('}\n')).toBe(true);
    await setSiteVar(path, 'Area', 'south');
    expect(await readSiteVars(path)).toEqual({ CollectorPassword: SECRET, Area: 'south' });
  });

  it('is empty when absent, and an unreadable one is an error, not an empty set', async () => {
    expect(await readSiteVars(join(tmp.dir, 'none.json'))).toEqual({});
    expect(await siteVarNames(join(tmp.dir, 'none.json'))).toEqual([]);
    const dir = join(tmp.dir, 'is-a-dir.json');
    await mkdir(dir);
    await expect(readSiteVars(dir)).rejects.toMatchObject({ code: 'EISDIR' });
  });

  it('refuses a malformed file with CONFIG_INVALID naming the line, never echoing a value', async () => {
    const path = join(tmp.dir, 'broken.json');
    await writeFile(path, `{\n  "A": "${SECRET}",\n  "B": ${SECRET}\n}\n`);
    const e = await readSiteVars(path).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(UpdateError);
    expect((e as UpdateError).code).toBe('CONFIG_INVALID');
    expect((e as UpdateError).message).toMatch(/line 3/);
    expect((e as UpdateError).message).not.toContain(SECRET);
  });

  it('refuses a file whose names or values are not plain, without echoing it', async () => {
    for (const body of [{ 'bad-name': SECRET }, { Good: 42 }, [SECRET]]) {
      const path = join(tmp.dir, 'shape.json');
      await writeFile(path, JSON.stringify(body));
      const e = await readSiteVars(path).then(
        () => null,
        (x: unknown) => x as UpdateError,
      );
      expect(e?.code).toBe('CONFIG_INVALID');
      expect(e?.message).toContain('is not an object of NAME: "value" strings');
      expect(e?.message).not.toContain(SECRET);
    }
  });
});

describe('references', () => {
  it('accepts a name of 64 characters and no longer, in references as in names', () => {
    const long = `A${'b'.repeat(63)}`;
    expect(isVarName(long)).toBe(true);
    expect(referencedVars(`#{${long}}`)).toEqual([long]);
    expect(referencedVars(`#{${long}c}`)).toEqual([]);
    expect(referencedVars(['#{A}', '#{A}', '#{B}'])).toEqual(['A', 'B']);
  });

  it('leaves numbers, booleans and null untouched and fills every occurrence in one string', () => {
    expect(fillTemplate({ s: '#{A}-#{A}', n: 1, b: false, z: null }, { A: 'x' })).toEqual({ s: 'x-x', n: 1, b: false, z: null });
    expect(fillTemplate('#{A}', { A: 'top' })).toBe('top');
  });
});
