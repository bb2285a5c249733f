import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
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
  type Baseline,
  type ScenarioName,
} from '../helpers/crash-probe.js';
import { scratch } from '../helpers/packs.js';
import { sharedSamples } from '../helpers/probe.js';
import { mulberry32 } from '../helpers/prng.js';

/**
 * Random kills (issue 3): the real CLI installing a pack is SIGKILLed at a random moment within
 * the time an uninterrupted install takes, then `sonde agent recover` runs; the probe must be
 * whole on the old or the new release every time. Upgrade (1.0.0 -> 1.1.0, commits) and rollback
 * (1.1.1 -> 1.2.0-crash, rolls back by itself) runs are mixed. Every 4th run also installs the
 * same pack again, which must work as on a probe that never crashed.
 *
 * SONDE_KILL_SEED=<n> replays a run sequence; SONDE_KILL_RUNS=<n> changes how many (default 200).
 */
const SEED = process.env.SONDE_KILL_SEED !== undefined ? Number(process.env.SONDE_KILL_SEED) : randomInt(2 ** 31);
const RUNS = process.env.SONDE_KILL_RUNS !== undefined ? Number(process.env.SONDE_KILL_RUNS) : 200;
const FOLLOW_UP_EVERY = 4;

interface KillRun {
  readonly i: number;
  readonly scenario: ScenarioName;
  /** Where in an uninterrupted install's duration the kill lands, 0..1. */
  readonly at: number;
}

const rng = mulberry32(SEED);
const PLAN: KillRun[] = Array.from({ length: RUNS }, (_, i) => ({ i, scenario: rng.pick(['upgrade', 'rollback'] as const), at: rng.next() }));

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
const baselines = {} as Record<ScenarioName, Baseline>;
const installMs = {} as Record<ScenarioName, number>;
/** "<scenario> <state at the kill>" -> count. */
const landed = new Map<string, number>();
const outcomes = new Map<string, number>();
let startedAt = 0;

function count(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  console.log(`random kills: SONDE_KILL_SEED=${SEED} SONDE_KILL_RUNS=${RUNS}`);
  startedAt = Date.now();
  tmp = await scratch('sonde-crash-random-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  for (const name of ['upgrade', 'rollback'] as const) {
    const base = (baselines[name] = await makeBaseline(join(tmp.dir, `baseline-${name}`), s, SCENARIOS[name]));
    // One uninterrupted install measures the window the kills are spread over.
    const root = await copyBaseline(base, join(tmp.dir, `measure-${name}`));
    try {
      await startActiveApp(root, base.port, base.scenario.old.appVersion);
      const r = await runAgent(installArgs(s, base.scenario.pack, root));
      const answer = installAnswer(r);
      expect(answer.outcome).toBe(name === 'upgrade' ? 'committed' : 'rolled-back');
      installMs[name] = r.ms;
    } finally {
      await stopEverything(root);
      await rm(root, { recursive: true, force: true });
    }
  }
  console.log(`random kills: an uninterrupted install takes ${installMs.upgrade} ms (upgrade), ${installMs.rollback} ms (rollback)`);
}, 240_000);

afterAll(async () => {
  const rows = [...landed.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k.padEnd(40)} ${n}`);
  const after = [...outcomes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k.padEnd(40)} ${n}`);
  console.log(
    `random kills (seed ${SEED}, ${RUNS} runs, ${((Date.now() - startedAt) / 1000).toFixed(1)} s in all)\n` +
      `where the kills landed (the journal's state of the install at the kill):\n${rows.join('\n')}\n` +
      `where recover left the probe:\n${after.join('\n')}`,
  );
  for (const b of Object.values(baselines)) await stopEverything(b.root).catch(() => undefined);
  await tmp?.cleanup();
});

describe(`random kills during an install (seed ${SEED})`, () => {
  it.each(PLAN)('run $i: $scenario killed at a random moment, recover leaves the probe whole', async ({ i, scenario, at }) => {
    const base = baselines[scenario];
    const sc = SCENARIOS[scenario];
    const delay = Math.round(at * installMs[scenario]);
    const why = `seed ${SEED} run ${i} (${scenario}, kill after ${delay} ms)`;
    const root = await copyBaseline(base, join(tmp.dir, `run-${i}`));
    try {
      await startActiveApp(root, base.port, sc.old.appVersion);
      const agent = spawnAgent(installArgs(s, sc.pack, root));
      await sleep(delay);
      if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGKILL');
      const r = await agent.done;
      const killed = r.signal === 'SIGKILL';

      const started = await newDeployments(base, root);
      const d = started.at(-1);
      let where: string;
      if (!killed) where = `finished first (${d?.state ?? 'no deployment'})`;
      else if (!d) where = 'before the deployment was recorded';
      else where = d.endedAt ? `${d.state}, ended` : d.state;
      count(landed, `${scenario} ${where}`);

      await recover(root);
      const whole = await expectWhole(base, root, why);
      count(outcomes, `${scenario} ${whole.on} ${whole.last!.state}`);

      if (i % FOLLOW_UP_EVERY === 0) {
        const again = installAnswer(await runAgent(installArgs(s, sc.pack, root)));
        if (sc.new === null) expect(again, why).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
        else if (whole.on === 'old') expect(again, why).toMatchObject({ ok: true, outcome: 'committed' });
        else expect(again, why).toMatchObject({ ok: false, errorCode: 'ALREADY_INSTALLED' });
        await expectWhole(base, root, `${why}, after the follow-up install`);
      }
    } finally {
      await stopEverything(root);
      await rm(root, { recursive: true, force: true });
    }
  });
});
