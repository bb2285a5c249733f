import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch, writeTree } from '../helpers/packs.js';
import { sonde } from '../helpers/probe-state.js';

/**
 * `sonde pack --downgrade-from VERSION`: a signed downgrade allowance names the one installed
 * release it may replace (docs/pack-format.md), so a probe refuses it against any other
 * (test/update/policy.test.ts has the probe's side).
 */
const run = (args: string[], cwd: string): ReturnType<typeof sonde> => sonde(args, '', cwd);

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-downgrade-cli-');
  expect((await run(['keys', 'init-ca', '--dir', 'K'], tmp.dir)).code).toBe(0);
  expect((await run(['keys', 'issue-signer', '--dir', 'K'], tmp.dir)).code).toBe(0);
  await writeTree(join(tmp.dir, 'SRC'), { 'app/run.sh': '#!/bin/sh\n' });
}, 60_000);
afterAll(() => tmp.cleanup());

const base = ['--kind', 'product', '--product', 'demo', '--version', '1.0.0', '--model', 'probe-x1', '--sign', 'K/signer.key', '--cert', 'K/signer.crt'];

describe('sonde pack --downgrade-from', () => {
  it('signs an allowance that names the release it may replace', async () => {
    const packed = await run(['pack', 'SRC', ...base, '--downgrade-from', '1.1.0', '-o', 'down.spk'], tmp.dir);
    expect(packed.code, packed.stderr).toBe(0);
    const seen = await run(['inspect', 'down.spk', '--json'], tmp.dir);
    expect(JSON.parse(seen.stdout)).toMatchObject({ manifest: { allowDowngrade: true, downgradeFrom: '1.1.0' } });
  });

  it('refuses a release name that is not a semantic version (RECIPE_INVALID)', async () => {
    const r = await run(['pack', 'SRC', ...base, '--downgrade-from', 'latest', '-o', 'bad.spk'], tmp.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('RECIPE_INVALID');
  });
});
