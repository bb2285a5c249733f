import { spawn } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSondeError } from '../../base/src/errors/sonde-error.js';
import { loadCredentials } from '../../agent/src/daemon/credentials.js';
import { readConfig } from '../../agent/src/update/facts.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { readSiteVars } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { sharedSamples } from '../helpers/probe.js';

/**
 * A file that holds a secret (site-vars.json, config.json with site variables filled in, the
 * probe's credentials) is damaged by hand. Node's JSON.parse quotes the text around a syntax
 * error in its message, so a careless error path would carry the secret into a log, a receipt,
 * the CLI's output or an event for the server. A canary value planted in every malformed shape
 * must appear in none of them: the error names the file and the line, never the content.
 */
const CANARY = 'hunter2-canary-7c41';
const SHAPES: readonly [string, string][] = [
  ['a bare value', `${CANARY}\n`],
  ['an unquoted value', `{ "CollectorPassword": ${CANARY} }\n`],
  ['garbage after a quoted value', `{\n  "CollectorPassword": "${CANARY}" x\n}\n`],
  ['a truncated file', `{ "CollectorPassword": "${CANARY}`],
];

const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let tmp: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  tmp = await scratch('sonde-secret-error-');
});
afterAll(() => tmp.cleanup());

async function refusal(fn: () => Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await fn();
  } catch (e) {
    if (!isSondeError(e)) throw new Error(`not a coded error: ${(e as Error).constructor.name}`);
    return { code: e.code, message: e.message };
  }
  throw new Error('expected a refusal');
}

describe('a malformed file that holds a secret', () => {
  it.each(SHAPES)('site-vars.json with %s: CONFIG_INVALID naming the file, never the value', async (_shape, text) => {
    const path = join(tmp.dir, `site-vars-${_shape.replace(/\W+/g, '-')}.json`);
    await writeFile(path, text, { mode: 0o600 });
    const e = await refusal(() => readSiteVars(path));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain(path);
    expect(e.message).not.toContain(CANARY);
  });

  it('site-vars.json broken on its second line: the message says line 2', async () => {
    const path = join(tmp.dir, 'site-vars-line.json');
    await writeFile(path, `{\n  "CollectorPassword": "${CANARY}" x\n}\n`, { mode: 0o600 });
    expect((await refusal(() => readSiteVars(path))).message).toMatch(/line 2, column \d+/);
  });

  it.each(SHAPES)('config.json with %s: CONFIG_INVALID, never the value', async (_shape, text) => {
    const path = join(tmp.dir, `config-${_shape.replace(/\W+/g, '-')}.json`);
    await writeFile(path, text);
    const e = await refusal(() => readConfig(path));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).not.toContain(CANARY);
  });

  it.each(SHAPES)('the credential file with %s: CREDENTIALS_INVALID, never the token', async (_shape, text) => {
    const path = join(tmp.dir, `credentials-${_shape.replace(/\W+/g, '-')}.json`);
    await writeFile(path, text.replace('CollectorPassword', 'token'), { mode: 0o600 });
    await chmod(path, 0o600);
    const e = await refusal(() => loadCredentials(path));
    expect(e.code).toBe('CREDENTIALS_INVALID');
    expect(e.message).not.toContain(CANARY);
  });
});

describe('an install on a probe whose site-vars.json is malformed', () => {
  let s: SamplePaths;
  beforeAll(async () => {
    s = await sharedSamples(join(tmp.dir, 'samples'));
  }, 180_000);

  it('fails with CONFIG_INVALID, and neither the CLI output, the receipt nor the journal holds the value', async () => {
    const root = join(tmp.dir, 'probe');
    const l = layoutOf(root);
    await mkdir(l.etc, { recursive: true });
    await writeFile(l.siteVars, `{ "CollectorPassword": ${CANARY} }\n`, { mode: 0o600 });
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'agent', 'install', s.packs['1.0.0'], '--root', root, '--keyring', s.keys.rootCert, '--key', s.keys.fleetKey, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? -1, out }));
    });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out.trim().split('\n').at(-1)!)).toMatchObject({ ok: false, outcome: 'failed', errorCode: 'CONFIG_INVALID' });
    expect(r.out).not.toContain(CANARY);
    for (const name of await readdir(l.receipts)) expect(await readFile(join(l.receipts, name), 'utf8')).not.toContain(CANARY);
    for (const file of [l.journal, `${l.journal}-wal`]) {
      const bytes = await readFile(file).catch(() => Buffer.alloc(0));
      expect(bytes.includes(Buffer.from(CANARY)), file).toBe(false);
    }
  });
});
