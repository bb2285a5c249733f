import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch } from '../helpers/packs.js';
import { sonde, sondeOk } from '../helpers/probe-state.js';
import { freePort } from '../server/mosquitto-harness.js';

/**
 * What the operating system refuses reaches a new user as one line with its code, never a stack
 * trace (issue 23): a port another process holds, an output folder that does not exist.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-os-errors-');
});
afterAll(() => tmp.cleanup());

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe('operating-system refusals', () => {
  it('a taken port: PORT_IN_USE naming the address, exit 1', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      const r = await sonde(['server', '--data', join(tmp.dir, 'srv'), '--port', String(port), '--mqtt-port', String(await freePort())]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toBe(`error PORT_IN_USE: 127.0.0.1:${port} is in use by another process: choose another port`);
    } finally {
      holder.close();
    }
  });

  it('a missing output folder: FILE_ACCESS_FAILED naming the path, exit 1 (sonde pack -o)', async () => {
    const keys = join(tmp.dir, 'keys');
    await sondeOk(['keys', 'init-ca', '--dir', keys]);
    await sondeOk(['keys', 'issue-signer', '--dir', keys]);
    const src = join(tmp.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'a');
    const out = join(tmp.dir, 'no-such-folder', 'out.spk');
    const pack = await sonde(['pack', src, '--sign', join(keys, 'signer.key'), '--cert', join(keys, 'signer.crt'), '--product', 'p', '--version', '1.0.0', '--model', 'm', '-o', out]);
    expect(pack.code).toBe(1);
    expect(oneLine(pack.stderr)).toMatch(/^error FILE_ACCESS_FAILED: \w+ .*no-such-folder.*: no such file or folder \(ENOENT\)$/);
  });
});
