#!/usr/bin/env node
// `npm run mutation -- <source file> [--tests <test file>...]`: StrykerJS on one source file of the
// trust and install core, against the tests that cover it (docs/testing.md). Prints the mutation
// score as its last line: "mutation score: NN.NN%".
//
// Bounded for a 2-core machine: two test-runner processes, only the listed test files (Stryker's
// per-test coverage then runs, for each mutant, only the tests that reached it), static mutants
// included. Tests that load the built CLI (dist/) cannot see a mutant in the sources: the table
// lists the files whose tests import the sources.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** Which tests cover which core file (source imports, not the built CLI). */
const TARGETS = {
  'pack/src/trust.ts': [
    'test/security/chain-rfc5280.test.ts',
    'test/security/signer-chain.test.ts',
    'test/security/revoked-signer.test.ts',
    'test/security/expired-signer.test.ts',
    'test/security/retired-key-backdating.test.ts',
    'test/security/trust-store.test.ts',
    'test/security/trust-store-forgery.test.ts',
  ],
  'pack/src/root-rotation.ts': ['test/fuzz/root-rotation-fuzz.test.ts', 'test/security/root-rotation-walk.test.ts'],
  'pack/src/revocations.ts': [
    'test/security/revoked-signer.test.ts',
    'test/security/trust-store.test.ts',
    'test/security/chain-rfc5280.test.ts',
    'test/security/revocation-list.test.ts',
  ],
  'agent/src/update/policy.ts': ['test/update/units.test.ts', 'test/update/policy.test.ts', 'test/update/policy-edges.test.ts'],
  'agent/src/update/machine.ts': ['test/update/units.test.ts', 'test/update/outcome.test.ts'],
  'agent/src/update/migrations.ts': ['test/update/units.test.ts', 'test/update/migrations.test.ts'],
  'pack/src/safe-extract.ts': [
    'test/security/tar-path-escape.test.ts',
    'test/security/tar-duplicate-entry.test.ts',
    'test/security/tar-entry-type.test.ts',
    'test/security/tar-size-and-count.test.ts',
    'test/security/decompression-bomb.test.ts',
    'test/security/safe-extractor.test.ts',
  ],
  'agent/src/update/config-ops.ts': ['test/update/units.test.ts', 'test/update/config-ops.test.ts'],
  'agent/src/update/site-vars.ts': ['test/update/units.test.ts', 'test/update/site-vars.test.ts'],
};

function usage(message) {
  process.stderr.write(`${message}\nusage: npm run mutation -- <source file> [--coverage-all] [--no-verify] [--tests <test file>...]\nknown files: ${Object.keys(TARGETS).join(', ')}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const file = args[0];
if (!file) usage('name a source file');
const rel = relative(repo, resolve(file));
let tests = TARGETS[rel];
const at = args.indexOf('--tests');
if (at >= 0) tests = args.slice(at + 1).filter((a) => !a.startsWith('--'));
// --coverage all: every listed test runs against every mutant (slower; no reliance on per-test coverage).
const coverageAnalysis = args.includes('--coverage-all') ? 'all' : 'perTest';
if (!tests || tests.length === 0) usage(`no tests are known for ${rel}: give them with --tests`);
tests = tests.filter((t) => existsSync(join(repo, t)));
if (tests.length === 0) usage(`none of the tests listed for ${rel} exists`);

const VITEST_CONFIG = '.stryker-tmp.vitest.config.mjs';
writeFileSync(
  join(repo, VITEST_CONFIG),
  `import base from './vitest.config.ts';\nexport default { ...base, test: { ...base.test, include: ${JSON.stringify(tests)} } };\n`,
);
const reportFile = join(repo, 'reports', 'mutation', `${rel.replace(/[/.]/g, '_')}.json`);
const config = {
  $schema: './node_modules/@stryker-mutator/core/schema/stryker-schema.json',
  packageManager: 'npm',
  testRunner: 'vitest',
  // The tests are chosen by a vitest config of their own, not by Stryker's testFiles: with
  // testFiles, Stryker 9 activates a static mutant (a module-level constant) only after the module
  // has loaded, so every static mutant "survives" (stryker-js#6144). Without a test filter it
  // loads the module with the mutant active.
  vitest: { configFile: VITEST_CONFIG, related: false },
  plugins: ['@stryker-mutator/vitest-runner'],
  mutate: [rel],
  coverageAnalysis,
  concurrency: 2,
  timeoutMS: 20_000,
  timeoutFactor: 2,
  reporters: ['clear-text', 'json'],
  jsonReporter: { fileName: relative(repo, reportFile) },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  // The sandbox holds what the tests load: the sources, the tests, the sample app, the build (some
  // helpers run the built CLI) and the configs; never the benchmarks' or demo's scratch folders.
  ignorePatterns: ['/*', '!/base', '!/pack', '!/agent', '!/images', '!/server', '!/lxc', '!/cli', '!/test', '!/dist', '!/package.json', '!/tsconfig.json', '!/vitest.config.ts', `!/${VITEST_CONFIG}`],
};
const configPath = join(repo, '.stryker-tmp.config.json');
writeFileSync(configPath, JSON.stringify(config, null, 2));
const started = Date.now();
const r = spawnSync(process.execPath, [join(repo, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', configPath], { cwd: repo, stdio: 'inherit' });
rmSync(configPath, { force: true });
rmSync(join(repo, VITEST_CONFIG), { force: true });
if (!existsSync(reportFile)) {
  process.stderr.write(`stryker ended (${r.status ?? r.signal}) without a report\n`);
  process.exit(1);
}
const report = JSON.parse(readFileSync(reportFile, 'utf8'));
const counts = {};
const survivors = [];
for (const f of Object.values(report.files)) {
  for (const m of f.mutants) {
    counts[m.status] = (counts[m.status] ?? 0) + 1;
    if (m.status === 'Survived' || m.status === 'NoCoverage') survivors.push(m);
  }
}
const killed = (counts.Killed ?? 0) + (counts.Timeout ?? 0);
const valid = killed + (counts.Survived ?? 0) + (counts.NoCoverage ?? 0);
const percent = (n) => (valid === 0 ? 0 : (100 * n) / valid).toFixed(2);
process.stdout.write(`\n${rel}: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')} in ${((Date.now() - started) / 1000).toFixed(0)} s (tests: ${tests.join(', ')})\n`);
process.stdout.write(`stryker's score: ${percent(killed)}%\n`);
let byHand = 0;
if (!args.includes('--no-verify') && survivors.length > 0) {
  // Stryker's vitest runner reports a mutant that breaks a module's loading (or a beforeAll) as
  // survived: each survivor is applied by hand and the tests run on it (mutation-verify.mjs).
  const { verifySurvivors } = await import('./mutation-verify.mjs');
  process.stdout.write(`running the tests on each of the ${survivors.length} survivors, applied by hand:\n`);
  const verdicts = verifySurvivors(repo, rel, tests, survivors, (line) => process.stdout.write(line));
  byHand = verdicts.filter((v) => v.killed).length;
  writeFileSync(reportFile.replace(/\.json$/, '.survivors.json'), `${JSON.stringify(verdicts, null, 2)}\n`);
  process.stdout.write(`${byHand} of them killed by hand, ${survivors.length - byHand} survive (reports/mutation/…survivors.json)\n`);
}
process.stdout.write(`mutation score: ${percent(killed + byHand)}%\n`);
