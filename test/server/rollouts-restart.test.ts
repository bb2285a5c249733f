import Database from 'better-sqlite3';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandIdOf } from '../../server/src/rollouts/sending.js';
import { tempDir, waitFor, type TestServer } from './harness.js';
import { ids, SimFleet, startRolloutServer, statusOf, targetsOf, waitForState, withToken } from './rollout-fleet.js';

/**
 * The rollout state lives in the store: a server stopped in the middle of a wave and started again
 * on the same data directory resumes where it was. No probe gets a second command, a command the
 * first server promised but never stored (a crash between the two writes) is sent once with the
 * same id, an offline probe gets its command when it returns, and the next wave proceeds.
 */
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('a server restarted in the middle of a wave', () => {
  it('resumes the rollout from the store: no duplicate commands, and the next wave proceeds', async () => {
    const dir = await tempDir('sonde-rollout-restart-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const first = await startRolloutServer({ dataDir: dir });
    let s: TestServer = first.s;
    cleanups.push(() => s.close());
    const admin = s.admin;
    const pack = first.packs['1.1.0']!;
    const probes = [...ids('rs', 19), 'rs-late'];
    const fleet = await SimFleet.start(s, probes, { newVersion: pack.version, oldVersion: '1.0.0', offline: ['rs-late'] });
    cleanups.push(() => fleet.close());

    const r = await s.api<{ id: string }>('POST', '/api/v1/rollouts', {
      body: {
        packSha256: pack.sha256,
        target: { channel: 'stable' },
        strategy: { canary: { probeIds: ['rs-late', 'rs-00'] }, waves: [50, 100], successThreshold: 0.5, errorThreshold: 0.5, advance: { mode: 'wait', seconds: 0.2 } },
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = r.body.id;
    const plan = await targetsOf(s, id);
    const wave1 = plan.filter((t) => t.wave === 1).map((t) => t.probeId);
    expect(wave1).toHaveLength(8);
    // Five of the eight stop after `switched`: 3 of 8 committed is below the 50 % to pass.
    const holding = new Set(wave1.slice(0, 5));
    fleet.verdict = (p) => (holding.has(p) ? 'hold' : 'commit');

    await waitForState(s, id, 'running', (b) => b.wave === 1 && b.waves[1]!.committed === 3 && b.waves[1]!.installing === 5);
    await fleet.drain();
    await s.settle();

    // The crash window: rs-late's target says `sent`, but its command never reached the table.
    await s.close();
    const db = new Database(join(dir, 'sonde.db'));
    const deleted = db.prepare('DELETE FROM commands WHERE command_id = ?').run(commandIdOf(id, 1, 'rs-late')).changes;
    db.close();
    expect(deleted).toBe(1);

    s = withToken((await startRolloutServer({ dataDir: dir, packs: [] })).s, admin);
    await fleet.reconnect(s.mqttUrl);
    await s.settle(200);
    const resumed = await statusOf(s, id);
    expect(resumed).toMatchObject({ state: 'running', wave: 1 });
    expect(resumed.waves[2]).toMatchObject({ started: false, pending: 10 });
    for (const p of probes) expect(fleet.distinctCommands(p).length, p).toBeLessThanOrEqual(1);

    // The probe that was away comes back and gets the command it was promised, under the same id.
    await fleet.connect(s.mqttUrl, ['rs-late']);
    await waitFor('rs-late commanded', () => fleet.members.get('rs-late')!.installs.length > 0);
    expect(fleet.distinctCommands('rs-late')).toEqual([commandIdOf(id, 1, 'rs-late')]);

    // The held installs finish (the probes' outboxes reach the new server): wave 1 passes, wave 2 runs.
    expect(await fleet.release('commit')).toBe(5);
    const done = await waitForState(s, id, 'completed', (b) => b.progress.committed === 20);
    expect(done.history.map((h) => h.event)).toEqual(['start', 'wave-passed', 'wait-elapsed', 'wave-passed', 'wait-elapsed', 'last-wave-passed']);
    for (const p of probes) expect(fleet.distinctCommands(p), p).toHaveLength(1);
    const stored = (await s.server.context.commands.forRollout(id)).filter((c) => c.type === 'install');
    expect(stored).toHaveLength(20);
    expect(new Set(stored.map((c) => c.probeId)).size).toBe(20);
  });
});
