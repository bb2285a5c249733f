import { execFile } from 'node:child_process';
import { readFile, rename, rm, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fsyncDir, writeFileAtomic } from '../../../base/src/fs/atomic.js';
import type { Manifest } from '../../../pack/src/index.js';
import { AGENT_VERSION } from './agent-version.js';
import { agentUpdateCrashPoint } from './crash.js';
import { UpdateError } from './errors.js';
import type { Deployment } from './journal.js';
import type { Layout, SlotName } from './layout.js';

const run = promisify(execFile);

/**
 * The agent's own A/B (docs/self-update.md): an `agent` pack's build goes into the inactive agent
 * slot under <state>/agent/slots/, and the trial file hands it to the launcher
 * (packaging/sonde-agent-launch), which runs it, counts its starts down before it runs, and takes
 * it back by itself when it does not commit. This module is the agent's half of that contract:
 * where the files are, staging a build, writing the trial, committing it, and reading after a
 * restart what became of a trial. The launcher's half never depends on the new agent.
 */
export interface AgentHome {
  readonly dir: string;
  readonly slots: string;
  /** The slot whose agent runs; absent: the packaged one. */
  readonly committed: string;
  /** A self-update on trial: slot=, previous=, tries=, window=, confirm=. */
  readonly trial: string;
  /** Why the launcher last took a trial back (it writes it; the old agent reports it). */
  readonly lastFallback: string;
}

export function agentHome(layout: Layout): AgentHome {
  const dir = join(layout.state, 'agent');
  return { dir, slots: join(dir, 'slots'), committed: join(dir, 'committed'), trial: join(dir, 'trial'), lastFallback: join(dir, 'last-fallback') };
}

/** How the new agent proves itself: by reaching the fleet server, or (the old one was offline) by its self-check. */
export type Confirm = 'connect' | 'self-check';

export interface TrialFile {
  readonly slot: SlotName;
  readonly previous: SlotName | 'packaged';
  readonly tries: number;
  readonly window: number;
  readonly confirm: Confirm;
}

async function readText(path: string): Promise<string | null> {
  return readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
}

function fields(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0 && !m.has(line.slice(0, i))) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

const isSlot = (s: string | undefined): s is SlotName => s === 'a' || s === 'b';

export async function committedAgentSlot(home: AgentHome): Promise<SlotName | null> {
  const t = (await readText(home.committed))?.split('\n')[0]?.trim();
  return isSlot(t) ? t : null;
}

export async function readTrial(home: AgentHome): Promise<TrialFile | null> {
  const text = await readText(home.trial);
  if (text === null) return null;
  const f = fields(text);
  const slot = f.get('slot');
  const previous = f.get('previous') ?? 'packaged';
  if (!isSlot(slot)) return null;
  return {
    slot,
    previous: isSlot(previous) ? previous : 'packaged',
    tries: Number(f.get('tries') ?? 0) || 0,
    window: Number(f.get('window') ?? 300) || 300,
    confirm: f.get('confirm') === 'self-check' ? 'self-check' : 'connect',
  };
}

/** The slot the next agent build goes into: the one the running agent does not use. */
export async function agentTarget(home: AgentHome): Promise<{ previous: SlotName | null; target: SlotName }> {
  const previous = await committedAgentSlot(home);
  return { previous, target: previous === 'a' ? 'b' : 'a' };
}

export function agentEntry(home: AgentHome, slot: SlotName): string {
  return join(home.slots, slot, 'dist', 'cli', 'src', 'sonde.js');
}

/**
 * The extracted build (`tree`, the sonde-agent package's /usr/lib/sonde) checked and moved into
 * the slot, then synced: it is the version the signed manifest names, it runs here (its native
 * module loads in this Node: an agent built for another architecture or Node ABI is refused before
 * anything points at it), and every byte is on disk before the trial file names it.
 */
export async function stageAgentBuild(home: AgentHome, tree: string, m: Manifest, target: SlotName): Promise<void> {
  const pkg = await readText(join(tree, 'package.json'));
  let version: unknown;
  try {
    version = pkg === null ? null : (JSON.parse(pkg) as { version?: unknown }).version;
  } catch {
    version = null;
  }
  if (version !== m.version) {
    throw new UpdateError('AGENT_BUILD_INVALID', `the agent payload's package.json says version ${String(version)}; the signed manifest says ${m.version}`);
  }
  const entry = join(tree, 'dist', 'cli', 'src', 'sonde.js');
  if (!(await stat(entry).catch(() => null))?.isFile()) throw new UpdateError('AGENT_BUILD_INVALID', 'the agent payload has no dist/cli/src/sonde.js');
  // Its own code says its version, and its SQLite module opens a database, in this Node.
  const check = `const v=require(${JSON.stringify(join(tree, 'package.json'))}).version;const D=require(${JSON.stringify(join(tree, 'node_modules', 'better-sqlite3'))});new D(':memory:').prepare('select 1').get();process.stdout.write(v)`;
  try {
    const { stdout } = await run(process.execPath, ['-e', check], { timeout: 30_000 });
    if (stdout !== m.version) throw new Error(`it said ${stdout.slice(0, 40)}`);
  } catch (e) {
    throw new UpdateError('AGENT_BUILD_INVALID', `the agent build does not load in this probe's Node ${process.version} (${process.arch}): ${((e as { stderr?: string }).stderr ?? (e as Error).message).split('\n').find((l) => /Error/.test(l)) ?? (e as Error).message}`, { cause: e });
  }
  const slot = join(home.slots, target);
  await mkdir(home.slots, { recursive: true, mode: 0o755 });
  await rm(slot, { recursive: true, force: true });
  await rename(tree, slot);
  await syncTree(slot);
  await fsyncDir(home.slots);
  agentUpdateCrashPoint('agent:slot-written');
}

/** Every file of the new build on disk: syncfs(2) of its file system (`sync -f`), else a full sync. */
async function syncTree(dir: string): Promise<void> {
  try {
    await run('sync', ['-f', dir], { timeout: 120_000 });
  } catch {
    await run('sync', [], { timeout: 120_000 });
  }
}

/** "switching": the launcher's instruction, written and synced; from here the next start runs the new agent. */
export async function writeTrial(home: AgentHome, t: Omit<TrialFile, 'tries'>): Promise<void> {
  await mkdir(home.dir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(home.trial, `slot=${t.slot}\nprevious=${t.previous}\ntries=1\nwindow=${t.window}\nconfirm=${t.confirm}\n`);
  agentUpdateCrashPoint('agent:trial-written');
}

/** The new agent commits itself: `committed` names its slot, then the trial is removed (the launcher's order). */
export async function commitAgentSlot(home: AgentHome, slot: SlotName): Promise<void> {
  await writeFileAtomic(home.committed, `${slot}\n`);
  agentUpdateCrashPoint('agent:committed-written');
  await rm(home.trial, { force: true });
  await fsyncDir(home.dir);
}

/** This process is the agent a trial runs (the launcher sets SONDE_AGENT_TRIAL to its slot). */
export function runningOnTrial(d: Pick<Deployment, 'targetSlot' | 'toVersion'>): boolean {
  return d.targetSlot !== null && process.env.SONDE_AGENT_TRIAL === d.targetSlot && d.toVersion === AGENT_VERSION;
}

/** What became of the trial of agent deployment `d`, read from the launcher's files. */
export type TrialVerdict =
  /** The trial file is written and no new agent has run yet. */
  | { readonly kind: 'pending' }
  /** This process is the new agent, on trial. */
  | { readonly kind: 'mine' }
  /** The new agent committed (and may have stopped before it recorded so). */
  | { readonly kind: 'committed' }
  /** The launcher took it back; why, in its words. */
  | { readonly kind: 'fell-back'; readonly reason: string }
  /** No trial was written: the switch never happened. */
  | { readonly kind: 'not-written' };

export async function judgeTrial(home: AgentHome, d: Deployment): Promise<TrialVerdict> {
  const slot = d.targetSlot;
  if (slot === null) return { kind: 'not-written' };
  if (runningOnTrial(d)) return { kind: 'mine' };
  const trial = await readTrial(home);
  if (trial?.slot === slot) return { kind: 'pending' };
  if ((await committedAgentSlot(home)) === slot) return { kind: 'committed' };
  const fallback = await readText(home.lastFallback);
  const f = fallback === null ? null : fields(fallback.replace(/ (?=[a-z]+=)/g, '\n'));
  if (f?.get('slot') === slot && f.has('at') && Date.parse(f.get('at')!) >= Date.parse(d.startedAt) - 60_000) {
    return { kind: 'fell-back', reason: f.get('reason') ?? 'the launcher took it back' };
  }
  // Neither trial, committed nor a fallback of ours: the trial file never reached the disk.
  return d.state === 'trial' ? { kind: 'fell-back', reason: 'its trial ended without a commit' } : { kind: 'not-written' };
}

/**
 * Undoes an agent deployment that did not commit: a trial the launcher has not run is withdrawn,
 * and the unused build removed. The agent that runs is whatever `committed` names, untouched.
 */
export async function undoAgentUpdate(home: AgentHome, d: Deployment): Promise<void> {
  const slot = d.targetSlot;
  if (slot === null) return;
  const trial = await readTrial(home);
  if (trial?.slot === slot) {
    await rm(home.trial, { force: true });
    await fsyncDir(home.dir);
  }
  if ((await committedAgentSlot(home)) !== slot && !runningOnTrial(d)) await rm(join(home.slots, slot), { recursive: true, force: true });
}

/** `sonde agent status`'s `agent`: which agent the launcher runs, and what became of the last trial. */
export interface AgentSlotStatus {
  /** The slot the launcher runs (`committed`), or `packaged` (/usr/lib/sonde). */
  readonly runs: SlotName | 'packaged';
  /** The version of that agent (its package.json); null for the packaged one when unreadable. */
  readonly version: string | null;
  readonly slots: readonly { readonly name: SlotName; readonly version: string | null }[];
  readonly trial: { readonly slot: SlotName; readonly previous: string; readonly triesLeft: number; readonly windowSeconds: number } | null;
  /** The launcher's last fallback, as it wrote it. */
  readonly lastFallback: string | null;
}

async function versionIn(dir: string): Promise<string | null> {
  const text = await readText(join(dir, 'package.json'));
  try {
    return text === null ? null : ((JSON.parse(text) as { version?: string }).version ?? null);
  } catch {
    return null;
  }
}

export async function agentSlotStatus(home: AgentHome, packagedDir: string): Promise<AgentSlotStatus> {
  const runs = (await committedAgentSlot(home)) ?? 'packaged';
  const trial = await readTrial(home);
  const slots = [];
  for (const name of ['a', 'b'] as const) slots.push({ name, version: await versionIn(join(home.slots, name)) });
  return {
    runs,
    version: runs === 'packaged' ? await versionIn(packagedDir) : slots.find((s) => s.name === runs)!.version,
    slots,
    trial: trial ? { slot: trial.slot, previous: trial.previous, triesLeft: trial.tries, windowSeconds: trial.window } : null,
    lastFallback: (await readText(home.lastFallback))?.trim() ?? null,
  };
}
