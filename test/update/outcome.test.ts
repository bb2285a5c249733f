import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../agent/src/update/engine.js';
import { MAX_RESUMES, STATES, TRANSITIONS, isOutcome } from '../../agent/src/update/machine.js';
import { scratch } from '../helpers/packs.js';

/**
 * A deployment's outcome is recorded once, when the state machine enters an outcome state, and
 * the receipt, the status and the daemon read it. The give-up path after too many resumes goes
 * through the transition table like every other edge.
 */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function engineOn(): Promise<Engine> {
  const tmp = await scratch('sonde-outcome-');
  const engine = await Engine.open({ root: tmp.dir });
  cleanups.push(async () => {
    engine.close();
    await tmp.cleanup();
  });
  return engine;
}

describe('the give-up path', () => {
  it('has a gave-up edge from every state, into an outcome', () => {
    for (const s of STATES) {
      const to = TRANSITIONS[s]['gave-up'];
      expect(to, s).toBeDefined();
      expect(isOutcome(to!), s).toBe(true);
    }
  });

  it.each([
    ['verified', 'failed'],
    ['trial', 'failed'],
    ['rolling-back', 'failed'],
    ['committed', 'committed'],
  ] as const)('ends a deployment stuck in %s through the table as %s, and the receipt says so', async (state, outcome) => {
    const engine = await engineOn();
    const { journal, layout } = engine.context;
    const d = journal.create('20261206-000000000-00000001', 'ab', '/nowhere.spk', { version: null, slot: null, dbVersion: null, configVersion: null });
    journal.transition(d.id, 'received', 'ok', state);
    journal.update(d.id, { resumeCount: MAX_RESUMES });

    const ended = await engine.recover();

    expect(ended).toMatchObject({ id: d.id, state: outcome, outcome, errorCode: 'INSTALL_INTERRUPTED' });
    expect(ended!.endedAt).not.toBeNull();
    expect(journal.transitions(d.id).at(-1)).toMatchObject({ from: state, event: 'gave-up', to: outcome });
    const receipt = JSON.parse(await readFile(join(layout.receipts, `${d.id}.json`), 'utf8')) as { outcome: string; errorCode: string };
    expect(receipt).toMatchObject({ outcome, errorCode: 'INSTALL_INTERRUPTED' });
    expect(journal.unfinished()).toBeNull();
  });
});

describe('the recorded outcome', () => {
  it('is written when an outcome state is entered, and a later edge does not change it', async () => {
    const engine = await engineOn();
    const { journal } = engine.context;
    const d = journal.create('20261206-000000000-00000002', 'ab', '/nowhere.spk', { version: null, slot: null, dbVersion: null, configVersion: null });
    expect(journal.get(d.id)!.outcome).toBeNull();
    journal.transition(d.id, 'received', 'ok', 'verified');
    expect(journal.get(d.id)!.outcome).toBeNull();
    journal.transition(d.id, 'verified', 'refused', 'failed', { errorCode: 'POLICY_INCOMPATIBLE_MODEL' });
    expect(journal.get(d.id)).toMatchObject({ outcome: 'failed' });
    journal.transition(d.id, 'failed', 'done', 'failed');
    expect(journal.get(d.id)!.outcome).toBe('failed');
    const row = journal.connection.prepare('SELECT outcome, error_code FROM outcomes WHERE deployment_id = ?').all(d.id);
    expect(row).toEqual([{ outcome: 'failed', error_code: 'POLICY_INCOMPATIBLE_MODEL' }]);
  });
});
