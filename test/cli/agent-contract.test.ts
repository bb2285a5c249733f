import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch } from '../helpers/packs.js';
import { stopApp } from '../helpers/probe.js';

/**
 * Issue 3's acceptance contract, run exactly as written: build-samples, a site variable from
 * stdin, installs on a fresh root (which the first product install initialises; the app then
 * listens on the template's port 8080), status and history as JSON.
 */
const run = promisify(execFile);
const TOP = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(TOP, 'dist/cli/src/sonde.js');

async function sonde(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

let tmp: { dir: string; cleanup: () => Promise<void> };
let DIR: string;
let R: string;

beforeAll(async () => {
  tmp = await scratch('sonde-agent-contract-');
  DIR = join(tmp.dir, 'samples');
  R = join(tmp.dir, 'R');
  await run(join(TOP, 'images/build-samples'), ['--out', DIR], { cwd: TOP });
}, 240_000);

afterAll(async () => {
  await stopApp(R).catch(() => undefined);
  await tmp.cleanup();
});

describe('the sonde agent contract', () => {
  it('runs the release story through the CLI exactly as the contract writes it', async () => {
    const set = await sonde(['agent', 'vars', 'set', 'CollectorPassword', '--root', R], 'contract-secret');
    expect(set.code, set.stderr).toBe(0);
    const fast = ['--health-checks', '2', '--health-interval', '200', '--health-window', '8000'];
    const first = await sonde(['agent', 'install', join(DIR, 'probe-app-1.0.0.spk'), '--root', R, '--keyring', join(DIR, 'keys/root.crt'), '--key', join(DIR, 'keys/fleet.key'), ...fast]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    // The key is kept by the probe: later installs need no --key.
    const second = await sonde(['agent', 'install', join(DIR, 'probe-app-1.1.0.spk'), '--root', R, '--keyring', join(DIR, 'keys/root.crt'), ...fast]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const bad = await sonde(['agent', 'install', join(DIR, 'probe-app-1.2.0-bad.spk'), '--root', R, '--keyring', join(DIR, 'keys/root.crt'), ...fast]);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toMatch(/^ROLLED-BACK HEALTH_CHECK_FAILED: /);

    const status = await sonde(['agent', 'status', '--root', R, '--json']);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout) as Record<string, unknown>;
    expect(s).toMatchObject({ version: '1.1.0', appVersion: '1.1.0', slot: 'b', dbVersion: 2, configVersion: 2 });
    expect(s.lastOutcome).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });

    const history = await sonde(['agent', 'history', '--root', R, '--json']);
    const h = (JSON.parse(history.stdout) as { ok: boolean; deployments: { outcome: string; pack: { version: string } }[] }).deployments;
    expect(h.map((x) => [x.pack.version, x.outcome])).toEqual([
      ['1.2.0-bad', 'rolled-back'],
      ['1.1.0', 'committed'],
      ['1.0.0', 'committed'],
    ]);
    expect(status.stdout + history.stdout + first.stdout + second.stdout + bad.stdout).not.toContain('contract-secret');
  });
});
