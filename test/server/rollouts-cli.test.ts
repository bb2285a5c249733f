import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from './harness.js';
import { ids, SimFleet, startRolloutServer, waitForState } from './rollout-fleet.js';

/** `sonde rollout create|status|start|pause|resume|abort|approve|retry` as a subprocess (the built CLI). */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let s: TestServer;
let fleet: SimFleet;
let pack: { sha256: string; version: string };
let env: Record<string, string>;

async function sonde(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  const started = await startRolloutServer();
  s = started.s;
  pack = started.packs['1.1.0']!;
  fleet = await SimFleet.start(s, ids('cli', 4), { newVersion: pack.version, oldVersion: '1.0.0' });
  for (const p of fleet.ids) await s.api('PATCH', `/api/v1/probes/${p}`, { body: { addGroups: ['cli'] } });
  env = { SONDE_SERVER: s.url, SONDE_TOKEN: s.admin };
});
afterAll(async () => {
  await fleet?.close();
  await s?.close();
});

describe('sonde rollout', () => {
  it('creates a rollout with a canary and an approval gate, shows it, approves the next wave, and reports it completed', async () => {
    const created = await sonde('rollout', 'create', '--pack', pack.sha256, '--group', 'cli', '--canary', '1', '--approval', '--success', '100%', '--name', 'cli test', '--json');
    expect(created.code, created.stderr).toBe(0);
    const r = JSON.parse(created.stdout) as { id: string; state: string; waveCount: number; strategy: { successThreshold: number } };
    expect(r).toMatchObject({ state: 'running', waveCount: 2, strategy: { successThreshold: 1 } });
    await waitForState(s, r.id, 'awaiting-approval');

    const shown = await sonde('rollout', 'status', r.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^state +awaiting-approval, wave 1 of 2$/m);
    expect(shown.stdout).toMatch(/^updated +1 of 4 \(committed\)/m);
    expect(shown.stdout).toMatch(/^1 +canary +1 +1 /m);

    const approved = await sonde('rollout', 'approve', r.id);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/wave 2 of ro-[0-9a-f]+ approved by admin; running/);
    await waitForState(s, r.id, 'completed');

    const done = JSON.parse((await sonde('rollout', 'status', r.id, '--json')).stdout) as { state: string; progress: { updated: number }; approvals: unknown[] };
    expect(done).toMatchObject({ state: 'completed', progress: { updated: 4 } });
    expect(done.approvals).toHaveLength(1);
    const list = await sonde('rollout', 'status');
    expect(list.stdout).toMatch(new RegExp(`^${r.id} +cli test +completed +probe-app 1\\.1\\.0`, 'm'));

    const again = await sonde('rollout', 'pause', r.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error ROLLOUT_STATE_CONFLICT: /m);
  });

  it('drives a draft through start, pause, retry, resume and abort, with windows parsed from the flags', async () => {
    fleet.verdict = () => 'hold'; // the installs stay under way, so the rollout stays open
    const created = await sonde('rollout', 'create', '--pack', pack.sha256, '--probe', 'cli-00', '--probe', 'cli-01', '--keep-current', '--window', '01:00-03:00@+02:00/mon,tue', '--window', '12:00-12:00', '--wait', '90s', '--draft', '--json');
    expect(created.code, created.stderr).toBe(0);
    const r = JSON.parse(created.stdout) as { id: string; state: string; windows: unknown[]; strategy: { advance: unknown } };
    expect(r.state).toBe('draft');
    expect(r.windows).toEqual([
      { start: '01:00', end: '03:00', utcOffset: '+02:00', days: ['mon', 'tue'] },
      { start: '12:00', end: '12:00', utcOffset: 'Z' },
    ]);
    expect(r.strategy.advance).toEqual({ mode: 'wait', seconds: 90 });
    expect((await sonde('rollout', 'start', r.id)).stdout).toMatch(/: running, wave 1 of 1/);
    expect((await sonde('rollout', 'pause', r.id)).stdout).toMatch(/: paused \(operator\)/);
    expect((await sonde('rollout', 'retry', r.id)).stdout).toMatch(/^0 probe\(s\) retried \(the rollout is paused/);
    expect((await sonde('rollout', 'resume', r.id)).stdout).toMatch(/: running/);
    expect((await sonde('rollout', 'abort', r.id)).stdout).toMatch(/: aborted/);
  });

  it('reports refusals with their codes: a viewer creating, a missing target, an unknown rollout', async () => {
    const viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'v', role: 'viewer' } })).body.token;
    const forbidden = await sonde('rollout', 'create', '--pack', pack.sha256, '--group', 'cli', '--token', viewer);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^error FORBIDDEN: /m);
    const usage = await sonde('rollout', 'create', '--pack', pack.sha256);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^error USAGE: name a target/m);
    const missing = await sonde('rollout', 'status', 'ro-000000000000', '--json');
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, code: 'ROLLOUT_NOT_FOUND' });
  });

  it('takes the short pack id `sonde packs` prints wherever a pack is named, and says when one names no pack or is not an id', async () => {
    const listed = await sonde('packs');
    expect(listed.stdout).toContain(pack.sha256.slice(0, 16));
    const created = await sonde('rollout', 'create', '--pack', pack.sha256.slice(0, 16), '--group', 'cli', '--keep-current', '--draft', '--json');
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ packSha256: pack.sha256, state: 'draft' });
    expect(await sonde('rollout', 'abort', (JSON.parse(created.stdout) as { id: string }).id)).toMatchObject({ code: 0 });
    const none = await sonde('rollout', 'create', '--pack', 'ffffff0000', '--group', 'cli', '--draft');
    expect(none).toMatchObject({ code: 1 });
    expect(none.stderr).toContain('PACK_NOT_FOUND');
    const short = await sonde('rollout', 'create', '--pack', 'abc', '--group', 'cli', '--draft');
    expect(short.stderr).toContain('PACK_ID_INVALID');
  });

  it('follows a rollout live with --watch, a line per change with its time zone, until it completes, and numbers waves from 1 as everywhere', async () => {
    fleet.verdict = () => 'commit';
    const created = await sonde('rollout', 'create', '--pack', pack.sha256, '--group', 'cli', '--keep-current', '--canary', '1', '--wait', '1s', '--json');
    expect(created.code, created.stderr).toBe(0);
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    const watched = await sonde('rollout', 'status', id, '--watch');
    expect(watched.code, watched.stderr).toBe(0);
    const lines = watched.stdout.split('\n').filter((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  /.test(l));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatch(/completed, wave 2 of 2: committed 4 of 4/);
    expect(watched.stdout).toMatch(/^state +completed, wave 2 of 2$/m);
    expect(watched.stdout).toMatch(/^1 +canary +1 /m);
    expect(watched.stdout).toMatch(/^2 +wave +3 /m);
    const noId = await sonde('rollout', 'status', '--watch');
    expect(noId.code).toBe(2);
  });
});
