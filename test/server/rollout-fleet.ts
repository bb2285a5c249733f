import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { commandSchema, type Command } from '../../base/src/protocol/messages.js';
import type { EnrollmentFile } from '../../server/src/inventory/probe-service.js';
import { rolloutsModule } from '../../server/src/rollouts/module.js';
import type { EngineOptions } from '../../server/src/rollouts/engine.js';
import { serverSamples, SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

/**
 * Helpers of the rollout tests: a fleet of simulated probes that answer install commands the way
 * the agent does (every message passes the shared schemas: SimProbe in harness.ts), a loopback
 * webhook receiver, and a test server running the rollouts module with a fast tick.
 */

/** What a simulated probe does with an install command. */
export type Verdict = 'commit' | 'fail' | 'roll-back' | 'hold' | 'refuse';

export type InstallCommand = Extract<Command, { type: 'install' }>;

interface Member {
  creds: EnrollmentFile;
  /** null while the probe is offline. */
  sim: SimProbe | null;
  /** Every install command that reached the probe, repeats included. */
  installs: InstallCommand[];
  /** Command ids acted on (the agent keeps these across restarts, and ignores a repeat). */
  seen: Set<string>;
  /** Installs stopped after `switched`, waiting for release(). */
  held: { command: InstallCommand; deploymentId: string }[];
  /** The version the probe runs. */
  version: string;
}

export class SimFleet {
  readonly members = new Map<string, Member>();
  /** Decides each probe's answer when its command arrives; tests change it as they go. */
  verdict: (probeId: string, c: InstallCommand) => Verdict = () => 'commit';
  private deployments = 0;
  private work: Promise<unknown>[] = [];

  private constructor(
    readonly newVersion: string,
    readonly oldVersion: string,
  ) {}

  /** Enrolls and connects `ids` (but not those in `offline`); each reports `oldVersion` in a first state. */
  static async start(s: TestServer, ids: readonly string[], o: { newVersion: string; oldVersion?: string; offline?: readonly string[] }): Promise<SimFleet> {
    const fleet = new SimFleet(o.newVersion, o.oldVersion ?? '0.9.0');
    for (const id of ids) {
      const creds = await s.enroll(id);
      fleet.members.set(id, { creds, sim: null, installs: [], seen: new Set(), held: [], version: fleet.oldVersion });
    }
    await fleet.connect(s.mqttUrl, ids.filter((id) => !o.offline?.includes(id)));
    await s.settle();
    return fleet;
  }

  get ids(): string[] {
    return [...this.members.keys()];
  }

  /** Connects these probes (a probe coming back online). */
  async connect(mqttUrl: string, which: readonly string[]): Promise<void> {
    await Promise.all(
      which.map(async (id) => {
        const m = this.members.get(id)!;
        const sim = await SimProbe.connect(mqttUrl, m.creds);
        m.sim = sim;
        sim.client.on('message', (_topic, payload) => {
          const r = commandSchema.safeParse(JSON.parse(payload.toString()));
          if (!r.success || r.data.type !== 'install') return;
          m.installs.push(r.data);
          this.work.push(this.onInstall(id, m, sim, r.data));
        });
        await sim.state({ version: m.version, appVersion: m.version });
      }),
    );
  }

  private async onInstall(id: string, m: Member, sim: SimProbe, c: InstallCommand): Promise<void> {
    if (m.seen.has(c.commandId)) return;
    m.seen.add(c.commandId);
    const verdict = this.verdict(id, c);
    if (verdict === 'refuse') {
      await sim.event('command-refused', { commandId: c.commandId, code: 'COMMAND_BUSY', message: 'another install is running and one is already queued' });
      return;
    }
    await sim.event('command-accepted', { commandId: c.commandId });
    await sim.event('download-started', { commandId: c.commandId, packSha256: c.pack.sha256, totalBytes: c.pack.size });
    await sim.event('download-complete', { commandId: c.commandId, packSha256: c.pack.sha256 });
    const deploymentId = `d-${++this.deployments}`;
    await sim.event('install-state', { deploymentId, state: 'staged' });
    await sim.event('install-state', { deploymentId, state: 'switched' });
    if (verdict === 'hold') {
      m.held.push({ command: c, deploymentId });
      return;
    }
    await this.finish(m, sim, c, deploymentId, verdict);
  }

  private async finish(m: Member, sim: SimProbe, c: InstallCommand, deploymentId: string, verdict: 'commit' | 'fail' | 'roll-back'): Promise<void> {
    // As the agent's reportOutcome: the outcome event, then a state with what now runs.
    if (verdict === 'commit') {
      await sim.event('install-outcome', { id: `outcome-${deploymentId}`, deploymentId, outcome: 'committed', version: this.newVersion, commandId: c.commandId });
      m.version = this.newVersion;
    } else if (verdict === 'roll-back') {
      await sim.event('install-outcome', { id: `outcome-${deploymentId}`, deploymentId, outcome: 'rolled-back', code: 'HEALTH_CHECK_FAILED', commandId: c.commandId });
    } else {
      await sim.event('install-outcome', { id: `outcome-${deploymentId}`, deploymentId, outcome: 'failed', code: 'MIGRATION_FAILED', commandId: c.commandId });
    }
    await sim.state({ version: m.version, appVersion: m.version, lastDeployment: { id: deploymentId, outcome: verdict === 'commit' ? 'committed' : verdict, errorCode: null, version: m.version, at: new Date().toISOString() } });
  }

  /** Finishes the installs held after `switched` (the probe's outbox reaching the server). */
  async release(verdict: 'commit' | 'fail' | 'roll-back' = 'commit', which: (id: string) => boolean = () => true): Promise<number> {
    let n = 0;
    for (const [id, m] of this.members) {
      if (!which(id)) continue;
      const held = m.held.splice(0);
      for (const h of held) {
        if (!m.sim) throw new Error(`${id} is offline`);
        await this.finish(m, m.sim, h.command, h.deploymentId, verdict);
        n++;
      }
    }
    return n;
  }

  /** Sends an install-state without an outcome (what hawkBit would count as success; Sonde does not). */
  async report(id: string, state: string, deploymentId: string): Promise<void> {
    await this.members.get(id)!.sim!.event('install-state', { deploymentId, state });
  }

  /** Waits for every answer under way to be published. */
  async drain(): Promise<void> {
    while (this.work.length) {
      const w = this.work.splice(0);
      await Promise.all(w);
    }
  }

  /** Probes that received at least one install command (for this pack, if given). */
  commanded(packSha256?: string): Set<string> {
    return new Set([...this.members].filter(([, m]) => m.installs.some((c) => !packSha256 || c.pack.sha256 === packSha256)).map(([id]) => id));
  }

  /** Distinct install command ids per probe. */
  distinctCommands(id: string): string[] {
    return [...new Set(this.members.get(id)!.installs.map((c) => c.commandId))];
  }

  /** The server went away: reconnect everyone to its new address; what they saw is kept. */
  async reconnect(mqttUrl: string): Promise<void> {
    const online = [...this.members].filter(([, m]) => m.sim !== null).map(([id]) => id);
    await Promise.all([...this.members.values()].map((m) => m.sim?.close()));
    await this.connect(mqttUrl, online);
  }

  async close(): Promise<void> {
    await this.drain().catch(() => undefined);
    await Promise.all([...this.members.values()].map((m) => m.sim?.close()));
  }
}

/** A loopback webhook receiver. */
export interface Receiver {
  readonly url: string;
  readonly received: { type: string; data: Record<string, unknown> }[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Receiver['received'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(JSON.parse(body) as { type: string; data: Record<string, unknown> });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A clock the tests can move (maintenance windows). */
export class TestClock {
  private offsetMs = 0;
  now = (): Date => new Date(Date.now() + this.offsetMs);
  set(at: Date): void {
    this.offsetMs = at.getTime() - Date.now();
  }
}

/** A fast tick, and chunks small enough that a 50-probe fleet crosses chunk boundaries (issue, reconcile). */
export const FAST: EngineOptions = { tickMs: 40, reconcileEveryMs: 400, chunkSize: 8 };

/** A test server with the rollouts module on a fast tick, the sample packs' root trusted, and `packs` uploaded. */
export async function startRolloutServer(
  o: { engine?: EngineOptions; webhookUrl?: string; dataDir?: string; keep?: boolean; packs?: readonly ('1.0.0' | '1.1.0' | '1.1.1')[] } = {},
): Promise<{ s: TestServer; packs: Record<string, { sha256: string; version: string }> }> {
  const samples = await serverSamples();
  const s = await startTestServer({
    keyring: samples.keys.rootCert,
    modules: [rolloutsModule({ ...FAST, ...o.engine })],
    ...(o.dataDir ? { dataDir: o.dataDir } : {}),
    ...(o.keep ? { keep: true } : {}),
    options: { ...(o.webhookUrl ? { webhookUrl: o.webhookUrl } : {}), fanoutChunk: 10 },
  });
  const packs: Record<string, { sha256: string; version: string }> = {};
  for (const v of o.packs ?? ['1.1.0']) {
    const bytes = await readFile(samples.packs[v]);
    const r = await s.api('POST', '/api/v1/packs', { body: bytes });
    expect([200, 201]).toContain(r.status);
    packs[v] = { sha256: createHash('sha256').update(bytes).digest('hex'), version: v };
  }
  return { s, packs };
}

export interface RolloutStatusBody {
  id: string;
  state: string;
  wave: number;
  waveCount: number;
  pausedReason: string | null;
  waitUntil: string | null;
  progress: { size: number; committed: number; updated: number; failed: number; rolledBack: number; installing: number; pending: number; sent: number; skipped: number };
  waves: { wave: number; kind: string; size: number; committed: number; failed: number; rolledBack: number; pending: number; installing: number; started: boolean; eligible: number }[];
  window: { open: boolean; nextOpening: string | null };
  approvals: { kind: string; wave: number | null; environment: string | null; approvedBy: string; approvedByName: string; approvedAt: string }[];
  history: { event: string; from: string; to: string; actor: string }[];
}

export interface TargetBody {
  probeId: string;
  wave: number;
  state: string;
  attempt: number;
  commandId: string | null;
  errorCode: string | null;
}

export async function statusOf(s: TestServer, id: string, token?: string): Promise<RolloutStatusBody> {
  const r = await s.api<RolloutStatusBody>('GET', `/api/v1/rollouts/${id}`, token ? { token } : {});
  if (r.status !== 200) throw new Error(`status ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function targetsOf(s: TestServer, id: string): Promise<TargetBody[]> {
  const r = await s.api<TargetBody[]>('GET', `/api/v1/rollouts/${id}/targets?limit=10000`);
  if (r.status !== 200) throw new Error(`targets ${id}: ${r.status}`);
  return r.body;
}

/** Waits until the rollout is in `state` (and `also` holds). */
export function waitForState(s: TestServer, id: string, state: string, also: (b: RolloutStatusBody) => boolean = () => true, timeoutMs = 15_000): Promise<RolloutStatusBody> {
  return waitFor(
    `rollout ${id} ${state}`,
    async () => {
      const b = await statusOf(s, id);
      return b.state === state && also(b) ? b : null;
    },
    timeoutMs,
  );
}

export function ids(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
}

/** The same server seen with another token (after a restart the admin token is not printed again). */
export function withToken(s: TestServer, token: string): TestServer {
  return { ...s, admin: token, api: (method, path, o = {}) => s.api(method, path, { ...o, token: o.token === undefined ? token : o.token }) };
}
