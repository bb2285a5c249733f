import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentPack, packagedAgentTree, type AgentVariant } from '../helpers/agent-packs.js';
import { daemonBed, type DaemonBed } from '../helpers/daemon-bed.js';
import { onKilled } from '../helpers/on-killed.js';
import { dedupe, history, installCommand, outcomeOf, rawEvents, sleep, stateMessages, waitUntil, type ProbeFixture } from '../helpers/daemon-harness.js';
import { mulberry32 } from '../helpers/prng.js';
import { AGENT_UPDATE_CRASH_POINTS } from '../../agent/src/update/crash.js';
import { variantPack } from '../helpers/sample-variants.js';
import { parseTopic } from '../../base/src/protocol/topics.js';
import { stateSchema } from '../../base/src/protocol/messages.js';

/**
 * The agent updates itself (issue 21, docs/self-update.md), on a probe folder of this machine:
 * the packaged agent of this build (scripts/build-deb's /usr/lib/sonde) runs under the real
 * launcher (packaging/sonde-agent-launch) against an MQTT broker and an HTTP pack server, and
 * receives an agent pack by an install command. A good next agent commits once it has reached the
 * server; one that exits at start, hangs, or runs but never reports is taken back by the launcher
 * alone, and the previous agent reports why.
 */
const LAUNCHER = resolve(import.meta.dirname, '../../packaging/sonde-agent-launch');
const WINDOW_S = 10;
/** Seeded kills of a self-update (at least 50 with the lab's hard stops: test/lab/agent-self-update.test.ts). */
const KILLS = Number(process.env.SONDE_SELF_UPDATE_KILLS ?? 40);
const SEED = Number(process.env.SONDE_SELF_UPDATE_SEED ?? 21);

let bed: DaemonBed;
let packaged: string;
let launched: ChildProcess[] = [];
let offKilled: () => void = () => undefined;

beforeAll(async () => {
  bed = await daemonBed('sonde-self-update-');
  // Stopped by a signal, the worker still stops the launchers (each in a process group of its own).
  offKilled = onKilled(async () => {
    for (const c of launched) await stopLauncher(c);
  });
  packaged = await packagedAgentTree();
}, 600_000);

afterEach(async () => {
  for (const c of launched) await stopLauncher(c);
  launched = [];
});

afterAll(async () => {
  offKilled();
  await bed?.close();
});

/** The agent as the unit starts it: the launcher, in a process group of its own. */
function launch(p: ProbeFixture, env: Record<string, string> = {}): ChildProcess {
  const child = spawn('sh', [LAUNCHER, 'agent', 'run', '--config', p.configPath], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SONDE_AGENT_HOME: join(p.state, 'agent'), SONDE_AGENT_PACKAGED: packaged, SONDE_NODE: process.execPath, SONDE_AGENT_KILL_GRACE: '2', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  Object.defineProperty(child, 'stderrTail', { get: () => err });
  launched.push(child);
  return child;
}

async function stopLauncher(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once('close', r));
  try {
    process.kill(-c.pid!, 'SIGKILL');
  } catch {
    return;
  }
  await gone;
}

async function probeOnLauncher(env: Record<string, string> = {}): Promise<ProbeFixture> {
  const p = await bed.probe({ samples: bed.samples, config: { selfUpdate: { windowSeconds: WINDOW_S, settleMs: 2000 } } });
  const before = bed.broker.subscribes.get(p.id) ?? 0;
  launch(p, env);
  await waitUntil('the packaged agent subscribed', () => (bed.broker.subscribes.get(p.id) ?? 0) > before, 30_000);
  return p;
}

/** The agent versions of the states the probe published after `since` (ms). */
function statesSince(p: ProbeFixture, since: number): string[] {
  return bed.broker.received
    .filter((r) => r.at > since && parseTopic(r.topic)?.probeId === p.id && parseTopic(r.topic)?.kind === 'state')
    .map((r) => stateSchema.parse(JSON.parse(r.payload.toString())).agentVersion ?? '');
}

function agentVersions(p: ProbeFixture): string[] {
  return stateMessages(bed.broker.received, p.id).map((m) => m.state.agentVersion ?? '');
}

async function sendAgentPack(p: ProbeFixture, version: string, variant: AgentVariant): Promise<string> {
  const file = await agentPack(bed.dir, bed.samples.keys, version, variant);
  const ref = bed.http.addPack(`agent-${version}-${variant}`, await readFile(file));
  const cmd = installCommand(p.id, ref);
  await bed.server.command(p.id, cmd);
  return cmd.commandId;
}

describe('an agent that updates itself', () => {
  it('0.1.x -> next: the new agent runs on trial, reaches the server, commits; the launcher runs it from then on', async () => {
    const p = await probeOnLauncher();
    const commandId = await sendAgentPack(p, '9.0.1', 'good');
    const out = await waitUntil('the outcome of the agent update', () => outcomeOf(bed.broker.received, p.id, commandId), 120_000);
    expect(out).toMatchObject({ outcome: 'committed', version: '9.0.1' });
    await waitUntil('a state from agent 9.0.1', () => agentVersions(p).includes('9.0.1'), 30_000);
    const home = join(p.state, 'agent');
    expect((await readFile(join(home, 'committed'), 'utf8')).trim()).toBe('a');
    expect(existsSync(join(home, 'trial'))).toBe(false);
    const d = (await history(p.root)).find((x) => x.id === out.deploymentId)!;
    expect(d).toMatchObject({ kind: 'agent', outcome: 'committed', toVersion: '9.0.1', targetSlot: 'a', activeSlot: null });
    // Every event of the update reached the server once it was de-duplicated, in the order the
    // two agents wrote them; the outbox carried the old agent's last events across the restart.
    const events = dedupe(rawEvents(bed.broker.received, p.id)).unique.filter((e) => e.deploymentId === out.deploymentId || e.commandId === commandId);
    const states = events.filter((e) => e.type === 'install-state').map((e) => (e as { state: string }).state);
    expect(states).toEqual(['verified', 'staged', 'switching', 'trial', 'committed']);
    // A stop (systemd's SIGTERM to the launcher, its main process) drains the new agent and ends.
    const launcher = launched.at(-1)!;
    const gone = new Promise<number | null>((r) => launcher.once('close', (code) => r(code)));
    process.kill(launcher.pid!, 'SIGTERM');
    expect(await Promise.race([gone, sleep(30_000).then(() => 'still running')])).toBe(0);
    if (process.env.SONDE_TIMELINE) {
      const t0 = bed.broker.received.find((r) => r.payload.toString().includes(commandId))!.at;
      for (const r of bed.broker.received.filter((x) => parseTopic(x.topic)?.probeId === p.id && x.at >= t0)) console.log(r.at - t0, r.topic.split('/').at(-1), r.payload.toString().slice(0, 90));
    }
  });

  it('a second self-update goes into the other agent slot; a failing one falls back to the first self-update, not to the packaged agent', async () => {
    const p = await probeOnLauncher();
    const first = await sendAgentPack(p, '9.0.6', 'good');
    expect(await waitUntil('9.0.6 committed', () => outcomeOf(bed.broker.received, p.id, first), 120_000)).toMatchObject({ outcome: 'committed' });
    const second = await sendAgentPack(p, '9.0.7', 'good');
    const out2 = await waitUntil('9.0.7 committed', () => outcomeOf(bed.broker.received, p.id, second), 120_000);
    expect(out2, JSON.stringify(out2)).toMatchObject({ outcome: 'committed', version: '9.0.7' });
    const home = join(p.state, 'agent');
    expect((await readFile(join(home, 'committed'), 'utf8')).trim()).toBe('b');
    const third = await sendAgentPack(p, '9.0.8', 'exits-at-start');
    const out3 = await waitUntil('9.0.8 taken back', () => outcomeOf(bed.broker.received, p.id, third), 120_000);
    expect(out3).toMatchObject({ outcome: 'rolled-back', code: 'AGENT_UPDATE_ROLLED_BACK' });
    expect((await readFile(join(home, 'committed'), 'utf8')).trim()).toBe('b');
    const since = Date.now();
    await waitUntil('a state from 9.0.7 again', () => statesSince(p, since - 5000).includes('9.0.7'), 30_000);
  });

  for (const [variant, why] of [
    ['exits-at-start', /exited with code 3 before it reported/],
    ['hangs', new RegExp(`did not report within ${WINDOW_S} s`)],
    ['never-reports', new RegExp(`did not report within ${WINDOW_S} s`)],
  ] as const) {
    it(`a next agent that ${variant.replace(/-/g, ' ')} is taken back by the launcher alone; the previous agent reports why`, async () => {
      const p = await probeOnLauncher();
      const commandId = await sendAgentPack(p, '9.0.2', variant);
      const out = await waitUntil('the outcome of the agent update', () => outcomeOf(bed.broker.received, p.id, commandId), 180_000);
      expect(out).toMatchObject({ outcome: 'rolled-back', code: 'AGENT_UPDATE_ROLLED_BACK', version: '9.0.2' });
      expect((out as { message?: string }).message).toMatch(why);
      // The old agent is the one reporting, and it keeps running.
      const last = await waitUntil('a state after the fallback', () => stateMessages(bed.broker.received, p.id).at(-1));
      expect(last.state.agentVersion).not.toBe('9.0.2');
      const home = join(p.state, 'agent');
      expect(existsSync(join(home, 'trial'))).toBe(false);
      expect(existsSync(join(home, 'committed'))).toBe(false);
      expect(await readFile(join(home, 'last-fallback'), 'utf8')).toMatch(/slot=a previous=packaged/);
    });
  }

  it('a pack that needs a newer agent: the agent update named by the command goes first, then the pack, in one command', async () => {
    const p = await probeOnLauncher();
    const agent = await agentPack(bed.dir, bed.samples.keys, '9.0.3', 'good');
    const product = await variantPack(bed.samples, bed.dir, 'needs-agent-9.0.3', '1.0.0', { recipe: { minAgentVersion: '9.0.3' } });
    const agentRef = bed.http.addPack('agent-9.0.3', await readFile(agent));
    const cmd = { ...installCommand(p.id, bed.http.addPack('product-needs-9.0.3', await readFile(product))), agentFirst: { minAgentVersion: '9.0.3', pack: agentRef } };
    await bed.server.command(p.id, cmd);
    const out = await waitUntil('the outcome of the command', () => outcomeOf(bed.broker.received, p.id, cmd.commandId), 180_000);
    expect(out).toMatchObject({ outcome: 'committed', version: '1.0.0' });
    const deployments = (await history(p.root)).reverse();
    expect(deployments.map((d) => [d.kind, d.toVersion, d.outcome])).toEqual([
      ['agent', '9.0.3', 'committed'],
      ['product', '1.0.0', 'committed'],
    ]);
    // The agent update was reported as its own deployment, not as the command's outcome.
    const agentOutcome = rawEvents(bed.broker.received, p.id).find((e) => e.type === 'install-outcome' && e.deploymentId === deployments[0]!.id);
    expect(agentOutcome).toMatchObject({ outcome: 'committed', version: '9.0.3' });
    expect((agentOutcome as { commandId?: string }).commandId).toBeUndefined();
    await waitUntil('a state of agent 9.0.3 running 1.0.0', () => stateMessages(bed.broker.received, p.id).find((m) => m.state.agentVersion === '9.0.3' && m.state.version === '1.0.0'), 30_000);
  });

  it(`kill -9 of the launcher, the agent and its installer at ${KILLS} seeded moments of a self-update always ends with one whole, working agent`, async () => {
    const rng = mulberry32(SEED);
    const ref = bed.http.addPack('agent-9.1.0-kills', await readFile(await agentPack(bed.dir, bed.samples.keys, '9.1.0', 'good')));
    const packagedVersion = (JSON.parse(await readFile(join(packaged, 'package.json'), 'utf8')) as { version: string }).version;
    const tally = new Map<string, number>();
    // First a cut right after each of the self-update's own persistence points (the build synced
    // into its slot, the trial file, the new agent's `committed`), then at seeded random moments.
    const cuts = [...AGENT_UPDATE_CRASH_POINTS.map((point) => ({ point, delay: 0 })), ...Array.from({ length: KILLS }, () => ({ point: null, delay: rng.between(0, 8000) }))];
    const written: Record<(typeof AGENT_UPDATE_CRASH_POINTS)[number], string> = { 'agent:slot-written': 'slots/a/package.json', 'agent:trial-written': 'trial', 'agent:committed-written': 'committed' };
    for (const [i, { point, delay }] of cuts.entries()) {
      const p = await probeOnLauncher(point ? { SONDE_CRASH_AT: point } : {});
      const launcher = launched.at(-1)!;
      const cmd = installCommand(p.id, ref);
      await bed.server.command(p.id, cmd);
      if (point) {
        // The process that reaches the point dies there (SIGKILL); the rest of the probe goes with it.
        await waitUntil(`${point} reached`, () => existsSync(join(p.state, 'agent', written[point])), 60_000);
        await sleep(300);
      } else {
        await sleep(delay);
      }
      await stopLauncher(launcher);
      const cut = (await history(p.root))[0];
      const phase = point ?? (cut ? (cut.outcome ?? cut.state) : 'before the install');
      tally.set(phase, (tally.get(phase) ?? 0) + 1);
      if (process.env.SONDE_TIMELINE) console.log(`kill ${i}: ${delay} ms, ${phase}`);
      // The agent starts again (the unit restarts it); the server repeats a command not yet acknowledged.
      const restarted = Date.now();
      const before = bed.broker.subscribes.get(p.id) ?? 0;
      launch(p);
      await waitUntil('the agent back', () => (bed.broker.subscribes.get(p.id) ?? 0) > before, 60_000);
      await bed.server.command(p.id, cmd);
      const out = await waitUntil(`kill ${i} (after ${delay} ms, ${phase}): the command's outcome`, () => outcomeOf(bed.broker.received, p.id, cmd.commandId), 120_000);
      const home = join(p.state, 'agent');
      await waitUntil(`kill ${i}: no trial left`, () => !existsSync(join(home, 'trial')), 60_000);
      const committed = existsSync(join(home, 'committed'));
      const d = (await history(p.root)).find((x) => x.id === out.deploymentId)!;
      // One whole agent: what the journal says, what the launcher runs, and what reports agree.
      expect(d.outcome, `kill ${i} at ${delay} ms (${phase})`).toBe(committed ? 'committed' : out.outcome);
      expect(out.outcome === 'committed', `kill ${i} at ${delay} ms (${phase}): ${JSON.stringify(out)}`).toBe(committed);
      const running = committed ? '9.1.0' : packagedVersion;
      if (committed) {
        expect((await readFile(join(home, 'committed'), 'utf8')).trim()).toBe('a');
        expect((JSON.parse(await readFile(join(home, 'slots', 'a', 'package.json'), 'utf8')) as { version: string }).version).toBe('9.1.0');
      }
      await waitUntil(`kill ${i}: a state from agent ${running}`, () => statesSince(p, restarted).includes(running), 60_000);
      const all = await history(p.root);
      expect(all.every((x) => x.outcome !== null)).toBe(true);
      // Never run twice: a command ends once, whatever the cut.
      expect(all.filter((x) => x.errorCode === 'ALREADY_INSTALLED')).toEqual([]);
      await stopLauncher(launched.at(-1)!);
    }
    console.log(`${cuts.length} cuts (${AGENT_UPDATE_CRASH_POINTS.length} at persistence points, ${KILLS} seeded, seed ${SEED}), where they landed: ${[...tally].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }, 3_600_000);
});
