import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentPack, packagedAgentTree, type AgentVariant } from '../helpers/agent-packs.js';
import { daemonBed, type DaemonBed } from '../helpers/daemon-bed.js';
import { dedupe, history, installCommand, outcomeOf, rawEvents, stateMessages, waitUntil, type ProbeFixture } from '../helpers/daemon-harness.js';

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

let bed: DaemonBed;
let packaged: string;
let launched: ChildProcess[] = [];

beforeAll(async () => {
  bed = await daemonBed('sonde-self-update-');
  packaged = await packagedAgentTree();
}, 600_000);

afterEach(async () => {
  for (const c of launched) await stopLauncher(c);
  launched = [];
});

afterAll(async () => {
  await bed?.close();
});

/** The agent as the unit starts it: the launcher, in a process group of its own. */
function launch(p: ProbeFixture): ChildProcess {
  const child = spawn('sh', [LAUNCHER, 'agent', 'run', '--config', p.configPath], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SONDE_AGENT_HOME: join(p.state, 'agent'), SONDE_AGENT_PACKAGED: packaged, SONDE_NODE: process.execPath, SONDE_AGENT_KILL_GRACE: '2' },
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

async function probeOnLauncher(): Promise<ProbeFixture> {
  const p = await bed.probe({ samples: bed.samples, config: { selfUpdate: { windowSeconds: WINDOW_S, settleMs: 2000 } } });
  const before = bed.broker.subscribes.get(p.id) ?? 0;
  launch(p);
  await waitUntil('the packaged agent subscribed', () => (bed.broker.subscribes.get(p.id) ?? 0) > before, 30_000);
  return p;
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
});
