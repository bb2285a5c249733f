import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/systemd-container.js';
import { mulberry32 } from '../helpers/prng.js';

/**
 * packaging/sonde-agent-launch, the agent unit's ExecStart: which agent runs, and the fallback of
 * a self-update on trial that does not depend on the new agent (issue 21). Real sh, real node
 * processes standing in for agents: each writes what it did to a log, and the new one commits,
 * exits at start, or hangs, as told; test/packaging/self-update.test.ts runs the real agents. This
 * proves the part that must hold whatever the new agent does.
 */
const LAUNCH = join(REPO, 'packaging', 'sonde-agent-launch');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-launch-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A stand-in agent: logs `<name> <args>`, then behaves as its `behaviour` file says. */
const AGENT = `
const fs = require('node:fs'), path = require('node:path');
const me = process.env.NAME_OF_AGENT || path.basename(path.resolve(__dirname, '../../..'));
const home = process.env.SONDE_AGENT_HOME;
fs.appendFileSync(process.env.LAUNCH_LOG, me + ' ' + process.argv.slice(2).join(' ') + (process.env.SONDE_AGENT_TRIAL ? ' trial=' + process.env.SONDE_AGENT_TRIAL : '') + '\\n');
const behaviour = fs.readFileSync(path.resolve(__dirname, '../../../behaviour'), 'utf8').trim();
const put = (f, c) => { fs.writeFileSync(f + '.tmp', c); fs.renameSync(f + '.tmp', f); };
process.on('SIGTERM', () => process.exit(0));
if (behaviour === 'exit') process.exit(0);
if (behaviour === 'exit3') process.exit(3);
if (behaviour === 'hang') setInterval(() => {}, 1000);
if (behaviour === 'commit-then-next') {
  // Commits, installs the next agent into slot a at once (its trial written) and asks for a restart.
  put(path.join(home, 'committed'), process.env.SONDE_AGENT_TRIAL + '\\n'); fs.rmSync(path.join(home, 'trial'));
  put(path.join(home, 'trial'), 'slot=a\\nprevious=' + process.env.SONDE_AGENT_TRIAL + '\\ntries=1\\nwindow=10\\nconfirm=connect\\n');
  process.exit(75);
} else if (behaviour.startsWith('commit')) {
  const after = Number(behaviour.split(' ')[1] || 200);
  setTimeout(() => { put(path.join(home, 'committed'), process.env.SONDE_AGENT_TRIAL + '\\n'); fs.rmSync(path.join(home, 'trial')); setTimeout(() => process.exit(0), 300); }, after);
}
`;

interface Bed {
  readonly home: string;
  readonly packaged: string;
  readonly log: string;
}

async function agent(tree: string, behaviour: string): Promise<void> {
  await mkdir(join(tree, 'dist', 'cli', 'src'), { recursive: true });
  await writeFile(join(tree, 'dist', 'cli', 'src', 'sonde.js'), AGENT);
  await writeFile(join(tree, 'behaviour'), `${behaviour}\n`);
}

async function bed(name: string, o: { packaged?: string; a?: string; b?: string; committed?: string; trial?: Record<string, string | number> } = {}): Promise<Bed> {
  const root = join(dir, name);
  const home = join(root, 'agent');
  const packaged = join(root, 'packaged');
  await mkdir(join(home, 'slots'), { recursive: true });
  await agent(packaged, o.packaged ?? 'exit');
  if (o.b) await agent(join(home, 'slots', 'b'), o.b);
  if (o.a) await agent(join(home, 'slots', 'a'), o.a);
  if (o.committed) await writeFile(join(home, 'committed'), `${o.committed}\n`);
  if (o.trial) await writeFile(join(home, 'trial'), Object.entries(o.trial).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
  return { home, packaged, log: join(root, 'log') };
}

function launch(b: Bed, timeoutMs = 20_000): { done: Promise<{ code: number | null; stderr: string }>; pid: number } {
  const child = spawn('sh', [LAUNCH, 'agent', 'run', '--config', '/etc/sonde/agent.json'], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SONDE_AGENT_HOME: b.home, SONDE_AGENT_PACKAGED: b.packaged, SONDE_NODE: process.execPath, SONDE_AGENT_KILL_GRACE: '1', LAUNCH_LOG: b.log },
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stderr }); }));
  return { done, pid: child.pid! };
}

const lines = async (b: Bed) => (await readFile(b.log, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
const state = async (b: Bed) => ({
  committed: existsSync(join(b.home, 'committed')) ? (await readFile(join(b.home, 'committed'), 'utf8')).trim() : null,
  trial: existsSync(join(b.home, 'trial')),
  fallback: existsSync(join(b.home, 'last-fallback')) ? await readFile(join(b.home, 'last-fallback'), 'utf8') : null,
});

describe('sonde-agent-launch', () => {
  it('runs the packaged agent with its arguments when nothing was ever self-updated', async () => {
    const b = await bed('plain');
    expect((await launch(b).done).code).toBe(0);
    expect(await lines(b)).toEqual(['packaged agent run --config /etc/sonde/agent.json']);
  });

  it('runs the committed slot', async () => {
    const b = await bed('committed', { b: 'exit', committed: 'b' });
    await launch(b).done;
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json']);
  });

  it('keeps a new agent that commits in its window', async () => {
    const b = await bed('commits', { b: 'commit 300', trial: { slot: 'b', previous: 'packaged', tries: 1, window: 10 } });
    expect((await launch(b).done).code).toBe(0);
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json trial=b']);
    expect(await state(b)).toEqual({ committed: 'b', trial: false, fallback: null });
  });

  it('starts again at once when the agent exits with 75 (it installed an agent): the trial it wrote runs next, even one written right after its own commit', async () => {
    const b = await bed('restart', { b: 'commit-then-next', a: 'commit 100', trial: { slot: 'b', previous: 'packaged', tries: 1, window: 10 } });
    const t0 = Date.now();
    expect((await launch(b).done).code).toBe(0);
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json trial=b', 'a agent run --config /etc/sonde/agent.json trial=a']);
    // b's commit stood (it was not mistaken for an exit before committing), then a committed.
    expect(await state(b)).toEqual({ committed: 'a', trial: false, fallback: null });
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('takes back a new agent that exits at start, and runs the previous one at once, saying why', async () => {
    const b = await bed('exits', { b: 'exit3', trial: { slot: 'b', previous: 'packaged', tries: 1, window: 10 } });
    const r = await launch(b).done;
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json trial=b', 'packaged agent run --config /etc/sonde/agent.json']);
    const s = await state(b);
    expect(s).toMatchObject({ committed: null, trial: false });
    expect(s.fallback).toContain('reason=it exited with code 3 before it reported');
    expect(r.stderr).toContain('the agent of slot b is taken back');
  });

  it('takes back a new agent that hangs or never reports, when its window ends: stopped, then the previous one runs', async () => {
    const b = await bed('hangs', { b: 'hang', trial: { slot: 'b', previous: 'packaged', tries: 1, window: 2 } });
    const t0 = Date.now();
    await launch(b).done;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json trial=b', 'packaged agent run --config /etc/sonde/agent.json']);
    expect((await state(b)).fallback).toContain('reason=it did not report within 2 s');
  });

  it('never runs the new agent again once a start of it ended without a commit (a kill -9, a power cut)', async () => {
    const b = await bed('no-tries', { b: 'commit 100', trial: { slot: 'b', previous: 'packaged', tries: 0, window: 10 } });
    await launch(b).done;
    expect(await lines(b)).toEqual(['packaged agent run --config /etc/sonde/agent.json']);
    expect((await state(b)).fallback).toContain('its last start ended before it committed');
  });

  it('falls back to a previous self-update slot, not only to the packaged agent', async () => {
    const b = await bed('to-a', { b: 'exit3', committed: 'a', trial: { slot: 'b', previous: 'a', tries: 1, window: 10 } });
    await agent(join(b.home, 'slots', 'a'), 'exit');
    await launch(b).done;
    expect(await lines(b)).toEqual(['b agent run --config /etc/sonde/agent.json trial=b', 'a agent run --config /etc/sonde/agent.json']);
    expect(await state(b)).toMatchObject({ committed: 'a', trial: false });
  });

  it('a trial that names no whole agent is never started', async () => {
    const b = await bed('broken', { trial: { slot: 'b', previous: 'packaged', tries: 1, window: 10 } });
    await launch(b).done;
    expect(await lines(b)).toEqual(['packaged agent run --config /etc/sonde/agent.json']);
  });

  it('kill -9 of the launcher and its agent at 40 seeded random moments of a trial always leaves one whole agent for the next start', async () => {
    const rng = mulberry32(21);
    const rand = (): number => rng.next();
    const ends = { committed: 0, fellBack: 0 };
    for (let i = 0; i < 40; i++) {
      const commitAfter = Math.floor(rand() * 1500);
      const b = await bed(`kill-${i}`, { b: `commit ${commitAfter}`, trial: { slot: 'b', previous: 'packaged', tries: 1, window: 10 } });
      const run = launch(b);
      await new Promise((r) => setTimeout(r, Math.floor(rand() * 2000)));
      try {
        process.kill(-run.pid, 'SIGKILL');
      } catch {
        // already gone: the new agent committed and exited first
      }
      await run.done;
      const after = await state(b);
      // The next start: whatever the cut left, one agent runs, the one `committed` names.
      await writeFile(join(b.home, 'slots', 'b', 'behaviour'), 'exit\n');
      await launch(b).done;
      const s = await state(b);
      expect(s.trial, `run ${i}: the trial ended`).toBe(false);
      const last = (await lines(b)).at(-1)!;
      if (after.committed === 'b' && !after.trial) {
        expect([i, s.committed, last.split(' ')[0]]).toEqual([i, 'b', 'b']);
        ends.committed++;
      } else {
        expect([i, s.committed, last.split(' ')[0]]).toEqual([i, null, 'packaged']);
        ends.fellBack++;
      }
      expect(last).not.toContain('trial=');
    }
    // The cuts landed on both sides of the commit.
    expect(ends.committed).toBeGreaterThan(0);
    expect(ends.fellBack).toBeGreaterThan(0);
  }, 120_000);
});
