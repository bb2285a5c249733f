import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch } from '../helpers/packs.js';

/**
 * bench/power-cut's command line (the built script, as `bench/power-cut` runs it): `--help` and a
 * mistyped option used to start the whole default campaign (QEMU guests for about 20 minutes),
 * after wiping the previous run's results. Now `--help` prints the usage, and an unknown option, a
 * missing value or a word that is not a number is refused with exit 2, before anything is touched.
 */
const SCRIPT = resolve(import.meta.dirname, '../../dist/bench/src/power-cut.js');
let tmp: { dir: string; cleanup: () => Promise<void> };
let results: string;

/** Whether every folder above `file` lets others through and `file` lets them read it. */
function othersCanReach(file: string): boolean {
  if ((statSync(file).mode & 0o004) === 0) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dir === dirname(dir)) return true;
  }
}

function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    // As nobody when the test runs as root and nobody can reach the build: should a regression
    // ever let a line through, the bench stops at its "needs root" check instead of starting QEMU.
    const asNobody = process.getuid?.() === 0 && othersCanReach(SCRIPT) ? { uid: 65534, gid: 65534 } : {};
    execFile(process.execPath, [SCRIPT, ...args], { timeout: 60_000, ...asNobody }, (e, stdout, stderr) => {
      done({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  tmp = await scratch('sonde-power-cut-args-');
  results = join(tmp.dir, 'results');
  await mkdir(results);
  await writeFile(join(results, 'cut-1.log'), 'the last campaign\n');
});

afterAll(async () => {
  await tmp.cleanup();
});

describe('bench/power-cut, asked for help or mistyped', () => {
  it('prints its usage for --help and -h, and runs nothing', async () => {
    for (const help of ['--help', '-h']) {
      const r = await bench([help, '--dir', results]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^Usage: bench\/power-cut \[--cuts 10\]/);
      expect(r.stdout).toContain('--pack 1.1.0|1.2.0-bad|broken-init');
    }
    expect(await readFile(join(results, 'cut-1.log'), 'utf8')).toBe('the last campaign\n');
  });

  it('refuses an option it does not know, a missing value and a word for a number, with exit 2, leaving the last results', async () => {
    const cases: [string[], RegExp][] = [
      [['--cut', '10'], /Unknown option '--cut'/],
      [['--cuts'], /--cuts.*argument missing/],
      [['--cuts', 'ten'], /--cuts takes a number, not "ten"/],
      [['10'], /Unexpected argument '10'/],
    ];
    for (const [args, says] of cases) {
      const r = await bench(['--dir', results, ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(says);
      expect(r.stderr).toContain('Usage: bench/power-cut');
      expect(r.stdout).toBe('');
    }
    expect(await readFile(join(results, 'cut-1.log'), 'utf8')).toBe('the last campaign\n');
  });
});
