import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths, SampleReleaseVersion } from '../../images/src/samples/index.js';
import { CRASH_POINTS, type CrashPoint } from '../../agent/src/update/crash.js';
import {
  copyBaseline,
  expectWhole,
  installAnswer,
  installArgs,
  makeBaseline,
  newDeployments,
  recover,
  runAgent,
  SCENARIOS,
  spawnAgent,
  startActiveApp,
  stopEverything,
  transitionsOf,
  type Baseline,
  type ScenarioName,
} from '../helpers/crash-probe.js';
import { scratch } from '../helpers/packs.js';
import { sharedSamples } from '../helpers/probe.js';
import { variantPack } from '../helpers/sample-variants.js';
import { layoutOf } from '../../agent/src/update/layout.js';

/**
 * The crash matrix (issue 3; DESIGN.md, "Fault injection"): the real CLI is killed with SIGKILL at
 * every named crash point and at the rename of every file an install writes atomically; after
 * `sonde agent recover` the probe must be whole on the old or the new release, and installing the
 * same pack again must work, so nothing is left half-installed.
 *
 * Scenarios: "upgrade" (1.0.0 -> 1.1.0, commits) passes every point of a successful install;
 * "rollback" (1.1.1 -> 1.2.0-crash, the new app exits, the health gate fails) passes the rollback
 * points. A point the chosen scenario never reaches fails the test (the agent is not killed).
 */
/**
 * The hook points need a release with hooks: the same two scenarios, installing a variant of their
 * pack that ships every deployment hook (each appends its deployment and name to hooks.log).
 */
type HookScenario = 'hooks-upgrade' | 'hooks-rollback';
type CaseScenario = ScenarioName | HookScenario;
const HOOKED: Readonly<Record<HookScenario, ScenarioName>> = { 'hooks-upgrade': 'upgrade', 'hooks-rollback': 'rollback' };
const RECORD = '#!/bin/sh\necho "$SONDE_DEPLOYMENT_ID $SONDE_HOOK" >> "$SONDE_PROBE_ROOT/hooks.log"\n';
const HOOK_FILES = Object.fromEntries(['pre-install', 'migrate', 'post-switch', 'post-commit', 'on-rollback'].map((h) => [h, RECORD]));
const isHooked = (sc: CaseScenario): sc is HookScenario => sc in HOOKED;
const baseOf = (sc: CaseScenario): ScenarioName => (isHooked(sc) ? HOOKED[sc] : sc);

interface CrashCase {
  readonly at: string;
  readonly scenario: CaseScenario;
}

function scenariosOf(point: CrashPoint): CaseScenario[] {
  if (point.startsWith('hook:on-rollback:')) return ['hooks-rollback'];
  if (point.startsWith('hook:')) return ['hooks-upgrade'];
  if (point.startsWith('rollback:')) return ['rollback'];
  // The trial begins the same way whether it ends healthy or not.
  if (point === 'trial:persisted' || point === 'trial:app-started') return ['upgrade', 'rollback'];
  // trial:health-checked-once is not on the rollback list: the crashing app may be gone before the
  // first check, which then ends the trial at once.
  return ['upgrade'];
}

/** Every line of hooks.log, and the (deployment, hook) pairs that ran more than once. */
async function hooksRunTwice(root: string): Promise<string[]> {
  const lines = (await readFile(join(root, 'hooks.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return lines.filter((l, i) => lines.indexOf(l) !== i);
}

/**
 * The files each scenario writes with writeFileAtomic; `#n` is the n-th write of that file in the
 * run, `*-*-*.json` the receipt (`<deployment id>.json`). upgrade: slots/status.json marks the
 * target bad, then good at the commit; the migrated config.json in staging; run/app.pid of the new
 * app; the receipt. rollback: status.json marks the target bad while staging and again while
 * undoing; app.pid of the crashing app, then of the old app restarted by the rollback.
 */
const ATOMIC_WRITES: Readonly<Record<ScenarioName, readonly string[]>> = {
  upgrade: ['status.json', 'status.json#2', 'config.json', 'app.pid', '*-*-*.json'],
  rollback: ['status.json', 'status.json#2', 'config.json', 'app.pid', 'app.pid#2', '*-*-*.json'],
};

const CASES: CrashCase[] = [
  ...CRASH_POINTS.flatMap((at) => scenariosOf(at).map((scenario) => ({ at, scenario }))),
  ...(['upgrade', 'rollback'] as const).flatMap((scenario) =>
    ATOMIC_WRITES[scenario].flatMap((file) => ['write:before-rename', 'write:after-rename'].map((point) => ({ at: `${point}:${file}`, scenario }))),
  ),
];

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
const baselines = {} as Record<ScenarioName, Baseline>;
const hookPacks = {} as Record<HookScenario, string>;
const report: string[] = [];
let n = 0;

beforeAll(async () => {
  tmp = await scratch('sonde-crash-matrix-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  for (const name of ['upgrade', 'rollback'] as const) {
    baselines[name] = await makeBaseline(join(tmp.dir, `baseline-${name}`), s, SCENARIOS[name]);
  }
  for (const [name, base] of Object.entries(HOOKED) as [HookScenario, ScenarioName][]) {
    hookPacks[name] = await variantPack(s, join(tmp.dir, 'variants'), name, SCENARIOS[base].pack as SampleReleaseVersion, { hooks: HOOK_FILES });
  }
}, 240_000);

afterAll(async () => {
  if (report.length > 0) {
    console.log(`crash matrix: ${report.length} cases\n${'point'.padEnd(40)} ${'scenario'.padEnd(9)} ${'journal at the kill'.padEnd(22)} ${'after recover'.padEnd(13)} follow-up\n${report.join('\n')}`);
  }
  for (const b of Object.values(baselines)) await stopEverything(b.root).catch(() => undefined);
  await tmp?.cleanup();
});

describe('crash matrix: a SIGKILL anywhere in an install leaves a whole probe after recover', () => {
  it('covers every named crash point and both sides of every atomic rename', () => {
    expect(CRASH_POINTS.length).toBeGreaterThanOrEqual(20);
    for (const p of CRASH_POINTS) expect(CASES.some((c) => c.at === p), p).toBe(true);
  });

  it.each(CASES)('$scenario killed at $at: recover leaves the old or the new release whole, and the same install then works', async ({ at, scenario }) => {
    const base = baselines[baseOf(scenario)];
    const sc = { ...SCENARIOS[baseOf(scenario)], ...(isHooked(scenario) ? { pack: hookPacks[scenario] } : {}) };
    const root = await copyBaseline(base, join(tmp.dir, `case-${++n}`));
    try {
      // The old release runs, as on a probe in the field (its writes paused through the config).
      await startActiveApp(root, base.port, sc.old.appVersion);

      const crashed = await runAgent(installArgs(s, sc.pack, root), { SONDE_CRASH_AT: at });
      expect(crashed.signal, `the agent was not killed at ${at} (exit ${crashed.code}): ${crashed.stdout}${crashed.stderr}`).toBe('SIGKILL');
      const started = await newDeployments(base, root);
      expect(started, 'every crash point lies after the deployment is recorded').toHaveLength(1);
      const atKill = `${started[0]!.state}${started[0]!.endedAt ? ' (ended)' : ''}`;

      await recover(root);
      const whole = await expectWhole(base, root, `after a kill at ${at}`);
      const trail = (await transitionsOf(root, whole.last!.id)).join('>');

      // Nothing half-installed: the same pack installs as on a probe that never crashed.
      const again = installAnswer(await runAgent(installArgs(s, sc.pack, root)));
      if (sc.new === null) expect(again, 'the crashing release rolls back again').toMatchObject({ ok: false, outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
      else if (whole.on === 'old') expect(again, 'the interrupted upgrade now commits').toMatchObject({ ok: true, outcome: 'committed', errorCode: null });
      else expect(again, 'the upgrade that committed is not installed twice').toMatchObject({ ok: false, errorCode: 'ALREADY_INSTALLED' });
      const after = await expectWhole(base, root, `after the follow-up install (kill at ${at})`);
      expect(after.on).toBe(sc.new === null ? 'old' : 'new');
      // At most once per deployment, across the kill and the recovery.
      if (isHooked(scenario)) expect(await hooksRunTwice(root), `hooks run twice (kill at ${at})`).toEqual([]);
      report.push(`${at.padEnd(40)} ${scenario.padEnd(14)} ${atKill.padEnd(22)} ${`${whole.on} ${whole.last!.state}`.padEnd(13)} ${again.outcome}${again.errorCode ? ` ${again.errorCode}` : ''}   [${trail}]`);
    } finally {
      await stopEverything(root);
      await rm(root, { recursive: true, force: true });
    }
  });

  // No named point lies between the agent stopping the old app for the database snapshot and
  // the journal knowing it did: the kill is timed on the old app's exit instead.
  it.each(['upgrade', 'rollback'] as const)('%s killed just as the old app has stopped for the snapshot: recover starts the old app again', async (scenario) => {
    const base = baselines[scenario];
    const sc = SCENARIOS[scenario];
    const root = await copyBaseline(base, join(tmp.dir, `case-${++n}`));
    try {
      await startActiveApp(root, base.port, sc.old.appVersion);
      const pid = Number((await readFile(join(layoutOf(root).run, 'app.pid'), 'utf8')).trim());
      const agent = spawnAgent(installArgs(s, sc.pack, root));
      for (;;) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      agent.child.kill('SIGKILL');
      expect((await agent.done).signal).toBe('SIGKILL');
      await recover(root);
      const whole = await expectWhole(base, root, 'after a kill as the old app stopped');
      expect(whole.on).toBe('old');
    } finally {
      await stopEverything(root);
      await rm(root, { recursive: true, force: true });
    }
  });
});
