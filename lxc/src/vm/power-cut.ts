import Database from 'better-sqlite3';
import { readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { CutNetwork } from './power-cut-net.js';
import type { VmBootloader } from '../../../images/src/vm/data-tree.js';
import { UBOOT_GOOD_TRIES } from '../../../agent/src/update/slots/boot-env.js';
import { VmProbe, type VmImages, type VmStatus } from './vm-probe.js';
import { applyMigrations, loadMigrations, planMigrations } from '../../../agent/src/update/migrations.js';
import { RELEASE_DIR, writeSampleReleaseTree } from '../../../images/src/system/system-image.js';
import type { SampleReleaseVersion } from '../../../images/src/samples/releases.js';

/**
 * The power-cut harness (docs/slots.md, "Power cuts"): a QEMU probe installs a system image from
 * its FTP drop; QEMU is killed at a chosen moment (the guest's page cache is lost, what its kernel
 * wrote to the virtual disk stays); the probe boots again and settles; then every check says
 * which release the probe is on, and all must say the same: the whole old release (the factory's
 * 1.0.0 in slot A, never committed by an agent: no database, the factory config) or the whole new
 * one (1.1.0 in slot B, committed).
 *
 * A cut lands either at a moment (a delay after the install started, seeded) or right after a
 * persistence point the agent passes (SONDE_CRASH_AT; the agent prints where and stops dead, and
 * the harness cuts when it reads that).
 *
 * The pack installed is 1.1.0 (old or new are both whole endings), or one that must end on the old
 * release whatever the cut: 1.2.0-bad (its app fails the health gate: the agent rolls back with a
 * reboot, so cuts land in the rollback too) or broken-init (the new slot never comes up: the
 * bootloader's counter alone gives up on it).
 */
export type CutPlan = { readonly kind: 'moment'; readonly delayMs: number } | PointPlan;

/**
 * Right after a persistence point: `at` is a SONDE_CRASH_AT spec (`point[:file]#n`, n counting
 * within one process), `role` the process that passes it (the agent, or the installer it forks),
 * `boot` which boot of the disk (1: the install; 2: the first boot of the new slot).
 */
export interface PointPlan {
  readonly kind: 'point';
  readonly at: string;
  readonly role?: 'agent' | 'installer';
  readonly boot?: number;
}

/** How a point plan reads in a report: `boot 2 agent commit:persisted#1`. */
export function pointName(p: PointPlan): string {
  return [p.boot !== undefined ? `boot ${p.boot}` : null, p.role ?? null, p.at].filter(Boolean).join(' ');
}

/** pointName read back (a test's SONDE_VM_POINTS takes what the bench prints): `[boot N] [agent|installer] spec`. */
export function parsePointName(text: string): PointPlan {
  const m = /^\s*(?:boot (\d+) )?(?:(agent|installer) )?(\S+)\s*$/.exec(text);
  if (!m) throw new Error(`not a persistence point: "${text}" (expected "[boot N] [agent|installer] point[:file]#n")`);
  return { kind: 'point', at: m[3]!, ...(m[2] ? { role: m[2] as 'agent' | 'installer' } : {}), ...(m[1] ? { boot: Number(m[1]) } : {}) };
}

export type Verdict = 'old' | 'new' | 'inconsistent';

export interface CutResult {
  readonly plan: CutPlan;
  readonly phase: string;
  readonly verdict: Verdict;
  /** Each check's answer ("old", "new", or what was wrong). */
  readonly checks: Readonly<Record<string, string>>;
  readonly seconds: number;
}

/** The packs a power-cut run installs: the good update, and two that must always end on the old release. */
export const CUT_PACKS = ['1.1.0', '1.2.0-bad', 'broken-init'] as const;
export type CutPack = (typeof CUT_PACKS)[number];
const NEW_PACK: CutPack = '1.1.0';

/** The endings a cut may have when `pack` is installed: only the good pack may end committed. */
export function wholeEndings(pack: CutPack): readonly Verdict[] {
  return pack === NEW_PACK ? ['old', 'new'] : ['old'];
}
const FACTORY_CONFIG = `${JSON.stringify({ port: 8080 }, null, 2)}\n`;

/** Where in the install a cut landed, from what the console showed up to it. */
export function phaseOf(console: string): string {
  const afterInstall = console.slice(Math.max(0, console.indexOf('install started')));
  if (!console.includes('install started')) return 'before the install';
  const downAt = afterInstall.search(/The system is going down|reboot: Restarting system/);
  if (downAt < 0) {
    const states = [...afterInstall.matchAll(/install state .*?state=(\w[\w-]*)/g)].map((m) => m[1]);
    switch (states[states.length - 1]) {
      case undefined:
      case 'received':
        return 'download and verify';
      case 'verified':
        return 'image write and migration';
      case 'staged':
      case 'switching':
        return 'switch';
      case 'trial':
        return 'reboot asked';
      default:
        return `state ${states[states.length - 1]}`;
    }
  }
  const after = afterInstall.slice(downAt);
  if (!/sonde-(grub|uboot): booting/.test(after)) return 'reboot';
  const booted = after.search(/sonde-vm: booted slot/);
  if (booted < 0) return 'first boot (bootloader, kernel)';
  const first = after.slice(booted);
  // The health gate failed: the agent puts the old release back and reboots into its slot.
  const rollingBack = first.search(/install state .*?state=rolling-back/);
  if (rollingBack >= 0) {
    const rest = first.slice(rollingBack);
    const down = rest.search(/The system is going down|reboot: Restarting system/);
    if (down < 0) return 'rollback';
    return /sonde-vm: booted slot/.test(rest.slice(down)) ? 'back in the old slot' : 'rollback reboot';
  }
  if (!/recovered an interrupted install/.test(first)) return 'first boot (agent, health gate)';
  return 'commit';
}

function sqliteFacts(path: string): { integrity: string; version: number; schema: string } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join(',');
    const version = db.pragma('user_version', { simple: true }) as number;
    const schema = (db.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all() as { sql: string | null }[]).map((r) => r.sql ?? '').join(';\n');
    return { integrity, version, schema };
  } finally {
    db.close();
  }
}

async function exists(p: string): Promise<boolean> {
  return readFile(p).then(
    () => true,
    () => false,
  );
}

/** The slot GRUB boots next, as good (OK, not on trial), by the documented grub.cfg. */
function grubNext(env: Record<string, string>): string | null {
  return (env.ORDER ?? '').split(' ').find((n) => env[`${n}_OK`] === '1' && env[`${n}_TRY`] !== '1') ?? null;
}

/** The slot U-Boot's script boots next, as good (all its boots left: the agent confirmed it). */
function ubootNext(env: Record<string, string>): string | null {
  const first = (env.BOOT_ORDER ?? '').split(' ').find((n) => Number(env[`BOOT_${n}_LEFT`] ?? '0') > 0) ?? null;
  return first !== null && env[`BOOT_${first}_LEFT`] === String(UBOOT_GOOD_TRIES) ? first : null;
}

/**
 * Every check of one probe at rest, each answering "old", "new" (`pack` committed in slot B) or
 * what is wrong. The database and config are judged against 1.1.0's (`expectedSchemaV2`): another
 * pack may only ever end "old".
 */
export async function judge(probe: VmProbe, images: VmImages, st: VmStatus, work: string, expectedSchemaV2: string, pack: CutPack = NEW_PACK): Promise<Record<string, string>> {
  const s = st.status!;
  const checks: Record<string, string> = {};
  const { grubenv, ubootEnv } = await probe.readDisk(work);
  const newPack = images.packs[pack];
  // The booted slot and the release the agent says it runs.
  checks.booted = s.slot === 'a' && s.version === null ? 'old' : s.slot === 'b' && s.version === newPack.version ? 'new' : `slot ${s.slot} version ${s.version}`;
  // The bootloader boots next what runs now, marked good.
  const name = s.slot === 'b' ? 'B' : 'A';
  const next = probe.bootloader === 'grub' ? grubNext(grubenv) : ubootNext(ubootEnv);
  checks.bootloader = next === name ? (name === 'A' ? 'old' : 'new') : `${probe.bootloader} would boot ${next}: ${JSON.stringify(probe.bootloader === 'grub' ? grubenv : ubootEnv)}`;
  // The running slot's bytes against the signed image hash.
  if (s.slot === 'b') checks.slot = (await probe.slotSha256(2, newPack.imageBytes)) === newPack.imageSha256 ? 'new' : `slot B does not hold the signed ${newPack.version} image`;
  else checks.slot = (await probe.slotSha256(1, images.factory.imageBytes)) === images.factory.imageSha256 ? 'old' : 'slot A does not hold the factory image';
  // The probe's database: none (old), or whole at version 2 with 1.1.0's schema (new).
  if (!(await exists(join(work, 'probe.db')))) checks.database = (await exists(join(work, 'probe.db-wal'))) ? 'a WAL without its database' : 'old';
  else {
    const f = sqliteFacts(join(work, 'probe.db'));
    checks.database = f.integrity !== 'ok' ? `integrity_check: ${f.integrity}` : f.version === 2 && f.schema === expectedSchemaV2 ? 'new' : `version ${f.version}, schema ${f.schema === expectedSchemaV2 ? 'as 1.1.0' : 'unlike 1.1.0'}`;
  }
  // The config: the factory's bytes (old), or migrated into 1.1.0's range (new).
  const config = await readFile(join(work, 'config.json'), 'utf8').catch(() => null);
  if (config === FACTORY_CONFIG) checks.config = 'old';
  else {
    try {
      const v = (JSON.parse(config ?? 'null') as { configVersion?: number } | null)?.configVersion;
      checks.config = v === 2 || v === 3 ? 'new' : `configVersion ${v}`;
    } catch {
      checks.config = 'config.json is not JSON';
    }
  }
  // The agent's journal: whole, nothing open, and the release it records.
  const j = sqliteFacts(join(work, 'agent.db'));
  if (j.integrity !== 'ok') checks.journal = `agent.db integrity_check: ${j.integrity}`;
  else {
    const db = new Database(join(work, 'agent.db'), { readonly: true });
    try {
      const open = db.prepare('SELECT COUNT(*) AS n FROM deployments WHERE ended_at IS NULL').get() as { n: number };
      const rel = db.prepare('SELECT version, slot FROM releases ORDER BY committed_at DESC LIMIT 1').get() as { version: string; slot: string } | undefined;
      if (open.n > 0) checks.journal = `${open.n} deployment(s) left open`;
      else if (!rel) checks.journal = 'old';
      else checks.journal = rel.version === newPack.version && rel.slot === 'b' ? 'new' : `release ${rel.version} in slot ${rel.slot}`;
    } finally {
      db.close();
    }
  }
  return checks;
}

/** "old" or "new" when every check says it and it is a whole ending for `pack` (wholeEndings); else "inconsistent". */
export function verdictOf(checks: Readonly<Record<string, string>>, pack: CutPack = NEW_PACK): Verdict {
  const answers = new Set(Object.values(checks));
  if (answers.size !== 1) return 'inconsistent';
  const only = [...answers][0] as Verdict;
  return wholeEndings(pack).includes(only) ? only : 'inconsistent';
}

export interface RunOptions {
  readonly dir: string;
  readonly images: VmImages;
  readonly expectedSchemaV2: string;
  readonly log?: (l: string) => void;
  /**
   * How long the probe has to boot and settle after the cut: a reinstall, a reboot and a commit
   * under TCG; with three QEMU probes on two cores that took over 8 minutes once.
   */
  readonly settleMs?: number;
  /** Keep the probe's folder (disk, consoles) for a look, instead of removing it. */
  readonly keep?: boolean;
  /** A fleet server the probe reports to: its view becomes the `server` check. */
  readonly server?: HarnessServer;
  /** This probe's number among those of the run (its address and tap on the server's network). */
  readonly index?: number;
  /** What boots the probe (the same disk boots through either). */
  readonly bootloader?: VmBootloader;
  /** The pack the probe installs (1.1.0 unless said). */
  readonly pack?: CutPack;
}

/** The fleet server of a power-cut run (the harness's own, on its unrouted bridge: power-cut-net.ts). */
export interface HarnessServer {
  readonly network: CutNetwork;
  /** Enrolls `probeId`; the enrollment file's text, with URLs the guest can reach. */
  enroll(probeId: string): Promise<string>;
  /** What the server shows for the probe: the release and slot it last reported. */
  view(probeId: string): Promise<{ readonly version: string | null; readonly slot: string | null; readonly stateAt: string | null } | null>;
}

/**
 * A running fleet server as the harness needs it: its loopback URL and admin token for the
 * harness, `probeUrl` (https on the bridge's host address) for the probes.
 */
export function harnessServer(base: string, admin: string, probeUrl: string, network: CutNetwork): HarnessServer {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : null) as T };
  };
  return {
    network,
    async enroll(probeId) {
      const r = await call<unknown>('POST', `/api/v1/probes/${probeId}/enroll`, { serverUrl: probeUrl });
      if (r.status >= 300) throw new Error(`enrolling ${probeId}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return JSON.stringify(r.body);
    },
    async view(probeId) {
      const r = await call<{ version: string | null; slot: string | null; stateAt: string | null }>('GET', `/api/v1/probes/${probeId}`);
      return r.status === 200 ? r.body : null;
    },
  };
}

/**
 * The server's view, once the probe has reported what it runs at rest: "new" (1.1.0 in slot b),
 * "old" (nothing committed), or what the server shows if it never matches within `timeoutMs`.
 */
export async function serverCheck(server: HarnessServer, probeId: string, st: VmStatus, timeoutMs = 120_000, newVersion: string = NEW_PACK): Promise<string> {
  const until = Date.now() + timeoutMs;
  let last: { version: string | null; slot: string | null; stateAt: string | null } | null = null;
  for (;;) {
    last = await server.view(probeId).catch(() => null);
    if (last && last.stateAt !== null && last.version === st.status!.version && (last.version === null || last.slot === st.status!.slot)) break;
    if (Date.now() > until) return `the server shows ${JSON.stringify(last)}; the probe runs ${JSON.stringify({ version: st.status!.version, slot: st.status!.slot })}`;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (last.version === null) return 'old';
  return last.version === newVersion && last.slot === 'b' ? 'new' : `the server shows ${last.version} in slot ${last.slot}`;
}

/** One cut: a fresh probe, the install, the cut, the boot after it, the checks. */
export async function cutOnce(plan: CutPlan, o: RunOptions): Promise<CutResult> {
  const t0 = Date.now();
  const probe = new VmProbe(o.dir, o.images, o.bootloader);
  const probeId = `power-cut-${basename(o.dir)}`;
  const index = o.index ?? 1;
  const pack = o.pack ?? NEW_PACK;
  const tap = o.server ? await o.server.network.tap(index) : null;
  const net = tap ? { tap } : {};
  await probe.create();
  try {
    await probe.prepare({
      inbox: [o.images.packs[pack].path],
      agentEnv: plan.kind === 'point' ? crashEnv(plan) : null,
      ...(o.server ? { enrollment: await o.server.enroll(probeId), address: o.server.network.address(index) } : {}),
    });
    const vm = probe.boot(net);
    // A point may come before the install starts (the agent marking its slot good at its start).
    const started = await vm.waitFor(plan.kind === 'point' ? /install started|sonde-cut-here: / : /install started/, 180_000);
    let phase: string;
    if (plan.kind === 'moment') {
      await new Promise((r) => setTimeout(r, plan.delayMs));
      phase = phaseOf(await vm.console());
    } else {
      const hit = await vm.waitFor(/sonde-cut-here: (\S+)|sonde-status: \{"inbox":0,"status":\{[^\n]*"unfinished":null/, 600_000, started.end - started.match[0].length);
      phase = hit.match[1] ? `after ${hit.match[1]}` : 'not reached';
    }
    await probe.cut();
    await probe.prepare({ agentEnv: null });
    probe.boot(net);
    const st = await probe.settled(o.settleMs ?? 900_000);
    const server = o.server ? await serverCheck(o.server, probeId, st, 120_000, o.images.packs[pack].version) : null;
    await probe.cut();
    const checks = await judge(probe, o.images, st, join(o.dir, 'read'), o.expectedSchemaV2, pack);
    if (server !== null) checks.server = server;
    return { plan, phase, verdict: verdictOf(checks, pack), checks, seconds: Math.round((Date.now() - t0) / 1000) };
  } finally {
    await probe.cut().catch(() => undefined);
    if (tap) o.server!.network.removeTap(tap);
    if (!o.keep) await rm(o.dir, { recursive: true, force: true });
  }
}

function crashEnv(p: PointPlan): Record<string, string> {
  return {
    SONDE_CRASH_AT: p.at,
    SONDE_CRASH_CONSOLE: '/dev/console',
    ...(p.role ? { SONDE_CRASH_ROLE: p.role } : {}),
    ...(p.boot !== undefined ? { SONDE_CRASH_BOOT: String(p.boot) } : {}),
  };
}

/** The schema a release's migrations make from an empty database (what a whole database of that release has). */
export async function schemaOfRelease(version: SampleReleaseVersion, scratch: string): Promise<string> {
  const tree = join(scratch, `schema-${version}`);
  await writeSampleReleaseTree(tree, version);
  const db = join(tree, 'probe.db');
  applyMigrations(db, planMigrations(await loadMigrations(join(tree, RELEASE_DIR.slice(1), 'db', 'migrations')), 0));
  const { schema } = sqliteFacts(db);
  await rm(tree, { recursive: true, force: true });
  return schema;
}

/** A small seeded generator (mulberry32): the same seed cuts at the same moments. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A file name known only at run time (a deployment id, a timestamp, a key id) as a pattern that
 * matches it in another run: each run of 6 or more hex digits becomes `*`.
 */
export function stableName(detail: string): string {
  return detail.replace(/[0-9a-f]{6,}/g, '*');
}

/**
 * The persistence points in a recorded console (SONDE_FAULT_TRACE lines), in the order passed:
 * for each boot of the disk and each process role, every point as a SONDE_CRASH_AT spec whose
 * `#n` counts it within its process. A point passed again by a later process of the same role in
 * the same boot (an agent restarted) is the same plan: cutting at its first pass is enough.
 */
export function pointsOf(console: string): PointPlan[] {
  const plans: PointPlan[] = [];
  const seen = new Map<string, number>();
  let boot = 0;
  for (const m of console.matchAll(/sonde-vm: booted slot \S+ \(\S+\) boot (\d+)|sonde-point: (\d+) (agent|installer) (\S+)/g)) {
    if (m[1] !== undefined) {
      boot = Number(m[1]);
      continue;
    }
    const [, , pid, role, raw] = m;
    const c = raw!.indexOf(':', raw!.indexOf(':') + 1);
    const at0 = c > 0 && raw!.startsWith('write:') ? `${raw!.slice(0, c)}:${stableName(raw!.slice(c + 1))}` : raw!;
    // Keyed by boot too: a process of a later boot can get the same pid (the guest boots alike).
    const key = `${boot} ${pid} ${at0}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    const plan: PointPlan = { kind: 'point', at: `${at0}#${n}`, role: role as 'agent' | 'installer', boot };
    if (!plans.some((p) => pointName(p) === pointName(plan))) plans.push(plan);
  }
  return plans;
}

/**
 * The persistence points of a system update, recorded in one run (SONDE_FAULT_TRACE): every point
 * the agent passes from its first start to the commit after the reboot (pointsOf), or, for a pack
 * that must fail, to the rollback's end in the old slot. The run without a cut must itself end as
 * the pack should (1.1.0 committed in B; any other pack rolled back, A running): else no point list.
 */
export async function recordPoints(o: RunOptions): Promise<PointPlan[]> {
  const probe = new VmProbe(o.dir, o.images, o.bootloader);
  const pack = o.pack ?? NEW_PACK;
  await probe.create();
  try {
    await probe.prepare({ inbox: [o.images.packs[pack].path], agentEnv: { SONDE_FAULT_TRACE: '/dev/console' } });
    probe.boot();
    const st = await probe.settled(o.settleMs ?? 900_000);
    const want = pack === NEW_PACK ? { slot: 'b', version: o.images.packs[pack].version } : { slot: 'a', version: null };
    if (st.status!.slot !== want.slot || st.status!.version !== want.version) {
      throw new Error(`the recording run of ${pack} ended in slot ${st.status!.slot} on ${st.status!.version}, not in slot ${want.slot} on ${want.version}`);
    }
    const text = await probe.vm.console();
    await probe.cut();
    return pointsOf(text);
  } finally {
    await probe.cut().catch(() => undefined);
    await rm(o.dir, { recursive: true, force: true });
  }
}
