import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSamples, type SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { sonde } from '../helpers/probe-state.js';

/**
 * A file that is not a pack at all says so (issue 23: "not a Sonde pack", not PACK_TRUNCATED);
 * a real pack cut short still says it was cut.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let samples: SamplePaths;
beforeAll(async () => {
  tmp = await scratch('sonde-not-a-pack-');
  samples = await buildSamples(join(tmp.dir, 'samples'));
}, 120_000);
afterAll(() => tmp.cleanup());

describe('a file that is not a Sonde pack', () => {
  it('is "not a Sonde pack" (PACK_FORMAT) for sonde inspect and sonde verify, short or long, text or binary', async () => {
    const files: Record<string, Buffer> = {
      'notes.txt': Buffer.from('hello\n'),
      'random.bin': randomBytes(4096),
      'config.json': Buffer.from(JSON.stringify({ port: 8080 })),
    };
    for (const [name, bytes] of Object.entries(files)) {
      const path = join(tmp.dir, name);
      await writeFile(path, bytes);
      const inspect = await sonde(['inspect', path]);
      expect(inspect.code, name).toBe(1);
      expect(inspect.stderr.trim()).toBe('error PACK_FORMAT: not a Sonde pack: the file does not begin with a sonde-bundle entry');
      const verify = await sonde(['verify', path, '--keyring', samples.keys.rootCert]);
      expect(verify.code, name).toBe(1);
      expect(verify.stdout + verify.stderr).toContain('PACK_FORMAT: not a Sonde pack');
    }
  });

  it('but a pack cut short, even inside its first header, or an empty file, is PACK_TRUNCATED', async () => {
    const pack = await readFile(samples.packs['1.0.0']);
    for (const cut of [5, 100, 511, 2000]) {
      const path = join(tmp.dir, `cut-${cut}.spk`);
      await writeFile(path, pack.subarray(0, cut));
      const r = await sonde(['inspect', path]);
      expect(r.code, String(cut)).toBe(1);
      expect(r.stderr, String(cut)).toContain('PACK_TRUNCATED');
    }
    const empty = join(tmp.dir, 'empty.spk');
    await writeFile(empty, '');
    expect((await sonde(['inspect', empty])).stderr).toContain('PACK_TRUNCATED: the file is empty');
  });
});
