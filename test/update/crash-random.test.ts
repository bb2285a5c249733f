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
  relocateBaseline,
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
 * The kill moment is drawn from [0.8 x start-up, whole install], both measured on uninterrupted
 * installs run under the same load (every lane busy): a large part of an install is Node starting
 * and loading the CLI, and a few kills there are enough to show that a kill before the journal is
 * touched is harmless. Runs go two at a time, each lane on its own copy of the baselines with its
 * own port.
 *
 * SONDE_KILL_SEED=<n> replays a run sequence; SONDE_KILL_RUNS=<n> changes how many (default 200).
 */
const SEED = process.env.SONDE_KILL_SEED !== undefined ? Number(process.env.SONDE_KILL_SEED) : randomInt(2 ** 31);
const RUNS = process.env.SONDE_KILL_RUNS !== undefined ? Number(process.env.SONDE_KILL_RUNS) : 200;
const FOLLOW_UP_EVERY = 4;
const LANES = 2;

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
/** Per lane, the baseline of each scenario. */
const lanes: Record<ScenarioName, Baseline>[] = [];
const free: number[] = [];
const waiting: ((lane: number) => void)[] = [];
/** The kill window per scenario: from just before the agent touches the journal to the end. */
const window = {} as Record<ScenarioName, { from: number; to: number }>;
/** "<scenario> <state at the kill>" -> count. */
const landed = new Map<string, number>();
const outcomes = new Map<string, number>();
let startedAt = 0;

function count(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function withLane<T>(fn: (lane: number) => Promise<T>): Promise<T> {
  const lane = free.pop() ?? (await new Promise<number>((r) => waiting.push(r)));
  try {
    return await fn(lane);
  } finally {
    const next = waiting.shift();
    if (next) next(lane);
    else free.push(lane);
  }
}

/** One uninterrupted install: how long the agent takes to record the deployment, and in all. */
async function measure(base: Baseline, name: string): Promise<{ startup: number; total: number }> {
  const root = await copyBaseline(base, join(tmp.dir, `measure-${name}`));
  try {
    await startActiveApp(root, base.port, base.scenario.old.appVersion);
    const spawnedAt = Date.now();
    const r = await runAgent(installArgs(s, base.scenario.pack, root));
    expect(installAnswer(r).outcome).toBe(base.scenario.new ? 'committed' : 'rolled-back');
    return { startup: Date.parse((await newDeployments(base, root))[0]!.startedAt) - spawnedAt, total: r.ms };
  } finally {
    await stopEverything(root);
    await rm(root, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  console.log(`random kills: SONDE_KILL_SEED=${SEED} SONDE_KILL_RUNS=${RUNS}`);
  startedAt = Date.now();
  tmp = await scratch('sonde-crash-random-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  const first = {} as Record<ScenarioName, Baseline>;
  for (const name of ['upgrade', 'rollback'] as const) first[name] = await makeBaseline(join(tmp.dir, `baseline-${name}`), s, SCENARIOS[name]);
  lanes.push(first);
  for (let lane = 1; lane < LANES; lane++) {
    const copies = {} as Record<ScenarioName, Baseline>;
    for (const name of ['upgrade', 'rollback'] as const) copies[name] = await relocateBaseline(first[name], join(tmp.dir, `baseline-${name}-lane${lane}`));
    lanes.push(copies);
  }
  free.push(...lanes.map((_, i) => i));

  // The kill window is measured as the runs will go: every lane busy at once, each scenario once
  // per round in some lane; the mean over the rounds.
  const names = ['upgrade', 'rollback'] as const;
  const measured: Record<ScenarioName, { startup: number; total: number }[]> = { upgrade: [], rollback: [] };
  for (let round = 0; round < names.length; round++) {
    const results = await Promise.all(
      lanes.map(async (lane, k) => {
        const name = names[(k + round) % names.length]!;
        return { name, m: await measure(lane[name], `${name}-lane${k}-round${round}`) };
      }),
    );
    for (const { name, m } of results) measured[name].push(m);
  }
  for (const name of names) {
    const mean = (f: (m: { startup: number; total: number }) => number): number => measured[name].reduce((a, m) => a + f(m), 0) / measured[name].length;
    window[name] = { from: Math.round(0.8 * mean((m) => m.startup)), to: Math.round(mean((m) => m.total)) };
  }
  console.log(
    `random kills: an uninterrupted install takes ${window.upgrade.to} ms (upgrade) and ${window.rollback.to} ms (rollback); ` +
      `kills land ${window.upgrade.from}..${window.upgrade.to} and ${window.rollback.from}..${window.rollback.to} ms after the spawn`,
  );
}, 240_000);

afterAll(async () => {
  const rows = [...landed.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k.padEnd(40)} ${n}`);
  const after = [...outcomes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k.padEnd(40)} ${n}`);
  console.log(
    `random kills (seed ${SEED}, ${RUNS} runs, ${((Date.now() - startedAt) / 1000).toFixed(1)} s in all)\n` +
      `where the kills landed (the journal's state of the install at the kill):\n${rows.join('\n')}\n` +
      `where recover left the probe:\n${after.join('\n')}`,
  );
  for (const b of lanes.flatMap((l) => Object.values(l))) await stopEverything(b.root).catch(() => undefined);
  await tmp?.cleanup();
});

describe(`random kills during an install (seed ${SEED})`, () => {
  it.concurrent.each(PLAN)('run $i: $scenario killed at a random moment, recover leaves the probe whole', async ({ i, scenario, at }) =>
    withLane(async (lane) => {
      const base = lanes[lane]![scenario];
      const sc = SCENARIOS[scenario];
      const delay = Math.round(window[scenario].from + at * (window[scenario].to - window[scenario].from));
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
    }),
  );
});
