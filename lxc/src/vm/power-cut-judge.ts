import Database from 'better-sqlite3';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UBOOT_GOOD_TRIES } from '../../../agent/src/update/slots/boot-env.js';
import { applyMigrations, loadMigrations, planMigrations } from '../../../agent/src/update/migrations.js';
import { RELEASE_DIR, writeSampleReleaseTree } from '../../../images/src/system/system-image.js';
import type { SampleReleaseVersion } from '../../../images/src/samples/releases.js';
import type { VmImages, VmProbe, VmStatus } from './vm-probe.js';

/**
 * How the power-cut harness judges a probe after a cut (docs/slots.md, "Power cuts"): where in
 * the install the cut landed (from the console), and what each check says the probe came back as:
 * the whole old release (the factory's 1.0.0 in slot A, never committed by an agent: no database,
 * the factory config) or the whole new one (the pack committed in slot B). A pack that must fail
 * (its app fails the health gate, or its init) may only ever end "old".
 */

export type Verdict = 'old' | 'new' | 'inconsistent';

/** The packs a power-cut run installs: the good update, and two that must always end on the old release. */
export const CUT_PACKS = ['1.1.0', '1.2.0-bad', 'broken-init'] as const;
export type CutPack = (typeof CUT_PACKS)[number];
/** The good update: the one pack that may end committed ("new"). */
export const NEW_PACK: CutPack = '1.1.0';

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
