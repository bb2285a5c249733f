import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeServerFlags, readServerConfigFile } from '../../server/src/cli/server-config-file.js';
import type { ServeFlags } from '../../server/src/cli/server-actions.js';

/** `sonde server --config FILE` (the Debian package's /etc/sonde/server.json). */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-server-config-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const flags: ServeFlags = { data: '', port: '8440', listen: [], logLevel: 'info' };

async function file(content: string): Promise<string> {
  const p = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(p, content);
  return p;
}

describe('the server config file', () => {
  it('reads the file the Debian package ships', async () => {
    const c = await readServerConfigFile(new URL('../../packaging/server.json', import.meta.url).pathname);
    expect(c).toEqual({ data: '/var/lib/sonde-server', port: 8440, listen: [], logLevel: 'info' });
    expect(JSON.parse(await readFile(new URL('../../packaging/server.json', import.meta.url), 'utf8'))).toEqual(c);
  });

  it('refuses an unknown key, a wrong type, no JSON and no file with SERVER_OPTIONS_INVALID naming what is wrong', async () => {
    await expect(readServerConfigFile(await file('{"data":"/d","prot":1}'))).rejects.toMatchObject({ code: 'SERVER_OPTIONS_INVALID', message: expect.stringContaining('unknown key prot') });
    await expect(readServerConfigFile(await file('{"data":"/d","port":"x"}'))).rejects.toMatchObject({ code: 'SERVER_OPTIONS_INVALID', message: expect.stringContaining('port') });
    await expect(readServerConfigFile(await file('{"data":'))).rejects.toMatchObject({ code: 'SERVER_OPTIONS_INVALID', message: expect.stringContaining('not JSON') });
    await expect(readServerConfigFile(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'SERVER_OPTIONS_INVALID', message: expect.stringContaining('ENOENT') });
  });

  it('lets an option given on the command line win over the file, and the file over the defaults', async () => {
    const c = await readServerConfigFile(await file('{"data":"/srv/d","port":9000,"listen":["10.0.0.1"],"keepEvents":"30d","logLevel":"warn"}'));
    expect(mergeServerFlags(c, flags, () => false)).toMatchObject({ data: '/srv/d', port: '9000', listen: ['10.0.0.1'], keepEvents: '30d', logLevel: 'warn' });
    const cli = new Set(['port', 'logLevel']);
    expect(mergeServerFlags(c, { ...flags, port: '7000', logLevel: 'debug' }, (k) => cli.has(k))).toMatchObject({ data: '/srv/d', port: '7000', logLevel: 'debug', keepEvents: '30d' });
  });
});
