// The second look at Stryker's survivors (scripts/mutation.mjs, docs/testing.md): each survivor is
// applied by hand to a copy of the sources and the listed tests are run on it with vitest. A
// mutant that makes a test fail is killed, whatever Stryker reported.
//
// Why: Stryker's vitest runner reports some killed mutants as survived. A mutant that makes the
// mutated module throw while it loads (a zod schema built at module level, say) leaves the test
// file with no test collected, and Stryker counts "no test failed" as a survivor; a beforeAll that
// throws skips every test of its file the same way. Running the tests on the mutated file by hand
// has no such blind spot: the test run fails, and that is the verdict.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const COPIED = ['base', 'pack', 'agent', 'images', 'server', 'lxc', 'cli', 'test', 'package.json', 'tsconfig.json', 'vitest.config.ts'];
const LINKED = ['node_modules', 'dist'];

/** The source with one mutant applied (Stryker's locations: 1-based lines and columns, end exclusive). */
export function applyMutant(source, location, replacement) {
  const lines = source.split('\n');
  const offset = (p) => lines.slice(0, p.line - 1).reduce((n, l) => n + l.length + 1, 0) + p.column - 1;
  return source.slice(0, offset(location.start)) + replacement + source.slice(offset(location.end));
}

/**
 * Runs `tests` against each survivor of `rel` applied by hand. Returns one verdict per survivor:
 * { id, line, mutator, replacement, killed, by }, `by` the first failing test's line when killed.
 */
export function verifySurvivors(repo, rel, tests, survivors, log = () => undefined) {
  const sandbox = mkdtempSync(join(tmpdir(), 'sonde-mutation-verify-'));
  const verdicts = [];
  try {
    for (const p of COPIED) if (existsSync(join(repo, p))) cpSync(join(repo, p), join(sandbox, p), { recursive: true });
    for (const p of LINKED) if (existsSync(join(repo, p))) symlinkSync(join(repo, p), join(sandbox, p));
    const file = join(sandbox, rel);
    const original = readFileSync(file, 'utf8');
    const vitest = join(repo, 'node_modules', 'vitest', 'vitest.mjs');
    const run = () =>
      spawnSync(process.execPath, [vitest, 'run', '--bail', '1', '--reporter', 'dot', ...tests], {
        cwd: sandbox,
        encoding: 'utf8',
        timeout: 300_000,
        env: { ...process.env, CI: 'true' },
      });
    // The unmutated sources must pass here, or no failure below would mean anything.
    const clean = run();
    if (clean.status !== 0) throw new Error(`the listed tests fail on the unmutated sources in ${sandbox}:\n${clean.stdout}\n${clean.stderr}`.slice(0, 4000));
    for (const m of survivors) {
      writeFileSync(file, applyMutant(original, m.location, m.replacement));
      const r = run();
      const killed = r.status !== 0;
      const out = `${r.stdout}\n${r.stderr}`;
      const plain = out.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
      const by = killed ? (plain.find((l) => /Error\b/.test(l)) ?? plain.find((l) => / FAIL /.test(l)) ?? `exit ${r.status ?? r.signal}`).trim().slice(0, 160) : null;
      verdicts.push({ id: m.id, line: m.location.start.line, mutator: m.mutatorName, replacement: m.replacement, killed, by });
      log(`  ${killed ? 'killed  ' : 'survived'} #${m.id} line ${m.location.start.line} ${m.mutatorName} -> ${JSON.stringify(m.replacement).slice(0, 60)}${by ? `  (${by})` : ''}\n`);
    }
    writeFileSync(file, original);
  } finally {
    rmSync(sandbox, { recursive: true, force: true });
  }
  return verdicts;
}
