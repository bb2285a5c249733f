import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab } from '../../lxc/src/lab.js';
import type { LabServerClient } from '../../lxc/src/lab-server.js';
import { agentPack, type AgentVariant } from '../helpers/agent-packs.js';
import { bringUp, LAB_SKIP, labSamples, sonde, waitUntil } from '../helpers/lab.js';
import { mulberry32 } from '../helpers/prng.js';
import { variantPack } from '../helpers/sample-variants.js';

/**
 * The agent updates itself on real LXC probes (issue 21, docs/self-update.md): each probe runs the
 * sonde-agent package of this build under its launcher (busybox init's respawn of
 * /opt/sonde/agent-launch), joined to the lab's fleet server. Agent packs go through the server
 * like any pack. A good next agent commits; one that exits at start, hangs, or never reports is
 * taken back by the launcher and the previous agent reports why; a rollout whose pack needs a newer
 * agent sends the agent update first; and `lxc-stop -k` at seeded moments of a self-update always
 * leaves one whole agent that reports.
 */
const LAB = 'eagent';
const HARD_STOPS = Number(process.env.SONDE_SELF_UPDATE_HARD_STOPS ?? 8);
const SEED = Number(process.env.SONDE_SELF_UPDATE_SEED ?? 21);

interface Detail {
  online: boolean;
  stateAt: string | null;
  version: string | null;
  agentVersion: string | null;
  health: string | null;
  commands: { commandId: string; status: string; errorCode: string | null }[];
}
interface AgentStatus {
  agent: { runs: string; version: string | null; trial: unknown; lastFallback: string | null };
  unfinished: unknown;
}

describe.skipIf(LAB_SKIP)('an agent that updates itself, on LXC probes', () => {
  let lab: Lab;
  let client: LabServerClient;
  let names: string[] = [];
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sonde-eagent-'));
    ({ lab, client, names } = await bringUp(LAB, 3, 'stable'));
  }, 600_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    await rm(scratch, { recursive: true, force: true });
  }, 120_000);

  const detail = async (name: string): Promise<Detail> => (await client.probe(name)) as unknown as Detail;

  async function status(name: string): Promise<AgentStatus> {
    const r = await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'status', '--root', '/', '--state', '/var/lib/sonde', '--json']);
    if (r.code !== 0) throw new Error(`agent status on ${name} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as AgentStatus;
  }

  async function upload(version: string, variant: AgentVariant = 'good'): Promise<string> {
    const file = await agentPack(scratch, labSamples().keys, version, variant, { compression: 'gzip' });
    const { body } = await client.api.upload<{ sha256: string }>('/api/v1/packs', file);
    await rm(file, { force: true });
    await rm(join(scratch, `src-${version}-${variant}`), { recursive: true, force: true });
    return body.sha256;
  }

  async function command(name: string, sha256: string): Promise<string> {
    const { body } = await client.api.json<{ commandId: string }>('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: sha256 });
    return body.commandId;
  }

  async function ended(name: string, commandId: string, timeoutMs = 180_000): Promise<Detail['commands'][number]> {
    return waitUntil(
      `${name}: command ${commandId} ended`,
      async () => (await detail(name)).commands.find((c) => c.commandId === commandId && ['succeeded', 'failed', 'refused', 'cancelled'].includes(c.status)),
      timeoutMs,
      250,
    );
  }

  it('0.1.x -> next through the server: the new agent commits, and the server shows its version', async () => {
    const name = names[0]!;
    const before = (await detail(name)).agentVersion;
    const c = await ended(name, await command(name, await upload('9.0.1')));
    expect(c).toMatchObject({ status: 'succeeded', errorCode: null });
    await waitUntil(`${name} reports agent 9.0.1`, async () => (await detail(name)).agentVersion === '9.0.1', 60_000);
    const s = await status(name);
    expect(s.agent).toMatchObject({ runs: 'a', version: '9.0.1', trial: null });
    expect(before).not.toBe('9.0.1');
    expect(await lab.agentLog(name)).toMatch(/restarting into the new agent on trial/);
  }, 300_000);

  it('a next agent that exits at start, one that hangs and one that never reports are each taken back by the launcher; the previous agent reports why', async () => {
    const name = names[1]!;
    const packaged = (await detail(name)).agentVersion;
    for (const [version, variant, why] of [
      ['9.0.2', 'exits-at-start', /exited with code 3/],
      ['9.0.3', 'hangs', /did not report within 30 s/],
      ['9.0.4', 'never-reports', /did not report within 30 s/],
    ] as const) {
      const c = await ended(name, await command(name, await upload(version, variant)));
      expect(c, variant).toMatchObject({ status: 'failed', errorCode: 'AGENT_UPDATE_ROLLED_BACK' });
      const events = (await client.probe(name)) as unknown as { events: { type: string; message?: string; code?: string }[] };
      const outcome = events.events.find((e) => e.type === 'install-outcome' && e.code === 'AGENT_UPDATE_ROLLED_BACK' && e.message?.includes(version));
      expect(outcome?.message, variant).toMatch(why);
      await waitUntil(`${name} reports the previous agent after ${variant}`, async () => (await detail(name)).online && (await detail(name)).agentVersion === packaged, 60_000);
      const s = await status(name);
      expect(s.agent, variant).toMatchObject({ runs: 'packaged', trial: null });
      expect(s.agent.lastFallback, variant).toMatch(/slot=a previous=packaged/);
    }
  }, 600_000);

  it('a rollout whose pack needs a newer agent sends the agent update first, then the pack', async () => {
    const name = names[2]!;
    const agent = await upload('9.0.5');
    const product = await variantPack(labSamples(), scratch, 'p111-needs-9.0.5', '1.1.1', { recipe: { minAgentVersion: '9.0.5' } });
    const pack = (await client.api.upload<{ sha256: string }>('/api/v1/packs', product)).body.sha256;
    const { body: r } = await client.api.json<{ id: string; agentFirst: unknown }>('POST', '/api/v1/rollouts', { packSha256: pack, target: { probeIds: [name] }, agentPackSha256: agent });
    expect(r.agentFirst).toMatchObject({ packSha256: agent, version: '9.0.5', minAgentVersion: '9.0.5' });
    await waitUntil(
      `rollout ${r.id} completed`,
      async () => ((await client.api.json<{ state: string }>('GET', `/api/v1/rollouts/${r.id}`)).body.state === 'completed' ? true : null),
      300_000,
      500,
    );
    await waitUntil(`${name} on 1.1.1 with agent 9.0.5`, async () => {
      const d = await detail(name);
      return d.version === '1.1.1' && d.agentVersion === '9.0.5';
    }, 60_000);
  }, 600_000);

  it(`lxc-stop -k at ${HARD_STOPS} seeded moments of a self-update always leaves one whole agent that reports`, async () => {
    const name = names[0]!;
    const rng = mulberry32(SEED);
    let running = (await detail(name)).agentVersion!;
    const landed: string[] = [];
    for (let i = 0; i < HARD_STOPS; i++) {
      const version = `9.2.${i}`;
      const sha = await upload(version);
      const commandId = await command(name, sha);
      const delay = rng.between(500, 12_000);
      await new Promise((r) => setTimeout(r, delay));
      await lab.stopProbe(name, true);
      const restarted = Date.now();
      await lab.startProbe(name);
      const c = await ended(name, commandId);
      const s = await waitUntil(`${name}: settled after stop ${i}`, async () => {
        const x = await status(name);
        return x.unfinished === null && x.agent.trial === null ? x : null;
      }, 120_000, 500);
      // One whole agent: the launcher runs what the outcome says, and that agent reports.
      const expected = c.status === 'succeeded' ? version : running;
      expect(s.agent.version, `stop ${i} after ${delay} ms: ${JSON.stringify(c)}`).toBe(expected);
      await waitUntil(`${name} reports agent ${expected} after stop ${i}`, async () => {
        const d = await detail(name);
        return d.online && d.stateAt !== null && Date.parse(d.stateAt) > restarted && d.agentVersion === expected;
      }, 120_000, 500);
      landed.push(`${delay} ms: ${c.status}${c.errorCode ? ` ${c.errorCode}` : ''}`);
      running = expected;
    }
    console.log(`${HARD_STOPS} hard stops (seed ${SEED}): ${landed.join('; ')}`);
  }, 1_800_000);
});
