import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layoutOf } from '../../agent/src/update/layout.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { appStatus, fastHealthFlags, seedConfig, sonde, stagingLeftovers, type CliRun } from '../helpers/probe-state.js';
import { sharedSamples, stopApp, wholeProbe } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * Site variables (DESIGN.md, "Site variables"; STYLE.md 12): the value enters through stdin only,
 * lives in site-vars.json and in the config it is filled into (both 0600), and nowhere else: not
 * in any output of the CLI, the journal, a receipt, the app's log, a slot or a snapshot other than
 * the config copies. A canary value is planted and every byte on the probe is searched for it.
 */
const CANARY = 'cAnArY-7f3e9b1d-site-secret';
/** Forms the value could leak in besides its plain bytes. */
const CANARY_FORMS: readonly Buffer[] = [
  Buffer.from(CANARY, 'utf8'),
  Buffer.from(CANARY, 'utf16le'),
  Buffer.from(Buffer.from(CANARY).toString('base64').slice(0, 24)),
  Buffer.from(Buffer.from(CANARY).toString('hex')),
];

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let R: string;
let port: number;
/** Every CLI run of this file: all of their output is searched for the canary at the end. */
const runs: CliRun[] = [];

async function cli(args: string[], input = ''): Promise<CliRun> {
  const r = await sonde(args, input);
  runs.push(r);
  return r;
}

async function install(id: keyof SamplePaths['packs'], windowMs?: number, ...extra: string[]): Promise<CliRun> {
  return cli(['agent', 'install', s.packs[id], '--root', R, '--keyring', s.keys.rootCert, '--key', s.keys.fleetKey, ...fastHealthFlags(windowMs), ...extra]);
}

function holdsCanary(bytes: Buffer): boolean {
  return CANARY_FORMS.some((f) => bytes.includes(f));
}

/** Every regular file under `dir`, relative to it (symlinks are not followed). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

beforeAll(async () => {
  tmp = await scratch('sonde-site-vars-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  R = join(tmp.dir, 'R');
  port = await freePort();
  await seedConfig(R, { port, pollMs: 40, measurements: { paused: true } });
}, 180_000);

afterAll(async () => {
  await stopApp(R).catch(() => undefined);
  await tmp.cleanup();
});

describe('sonde agent vars', () => {
  it('has no way to take a value on the command line: an extra argument, a --value flag or NAME=value are usage errors that write nothing', async () => {
    const help = await cli(['agent', 'vars', 'set', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: sonde agent vars set \[options\] <name>\n/);
    const options = help.stdout.slice(help.stdout.indexOf('Options:'));
    expect(options.match(/^\s+(-\S+)/gm)?.map((o) => o.trim())).toEqual(['--root', '--config', '-h,']);

    // Values that would be secrets if accepted; deliberately not the canary, as these forms may be echoed.
    for (const args of [
      ['agent', 'vars', 'set', 'CollectorPassword', 'argv-value', '--root', R],
      ['agent', 'vars', 'set', 'CollectorPassword', '--value', 'argv-value', '--root', R],
      ['agent', 'vars', 'set', 'CollectorPassword=argv-value', '--root', R],
    ]) {
      const r = await sonde(args, 'stdin-value\n');
      expect(r.code, args.join(' ')).toBe(2);
    }
    await expect(stat(layoutOf(R).siteVars)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('fails 1.1.0 with SITE_VARS_MISSING naming CollectorPassword before anything is switched, probe whole', async () => {
    const first = await install('1.0.0');
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(await appStatus(port)).toMatchObject({ version: '1.0.0', paused: true });
    const l = layoutOf(R);
    const before = await wholeProbe(R);
    const pointer = await readlink(l.current);
    const activeSlot = await treeDigest(join(l.slotsDir, 'a'));
    const pid = await readFile(join(l.run, 'app.pid'), 'utf8');

    const r = await install('1.1.0');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAILED SITE_VARS_MISSING: site variables not set on this probe: CollectorPassword \(/);
    expect(await wholeProbe(R)).toEqual(before);
    expect(await readlink(l.current)).toBe(pointer);
    expect(await treeDigest(join(l.slotsDir, 'a'))).toEqual(activeSlot);
    expect(await readFile(join(l.run, 'app.pid'), 'utf8')).toBe(pid);
    expect(await stagingLeftovers(R)).toEqual([]);

    const history = await cli(['agent', 'history', '--root', R, '--json']);
    const [last] = (JSON.parse(history.stdout) as { deployments: { outcome: string; errorCode: string; transitions: { to: string }[] }[] }).deployments;
    expect(last).toMatchObject({ outcome: 'failed', errorCode: 'SITE_VARS_MISSING' });
    expect(last!.transitions.map((t) => t.to)).toEqual(['received', 'verified', 'failed']);
  });

  it('reads the value from stdin into site-vars.json (mode 0600); vars list shows names only', async () => {
    const set = await cli(['agent', 'vars', 'set', 'CollectorPassword', '--root', R], `${CANARY}\n`);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe('set CollectorPassword\n');
    const file = layoutOf(R).siteVars;
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ CollectorPassword: CANARY });

    const list = await cli(['agent', 'vars', 'list', '--root', R]);
    expect(list).toMatchObject({ code: 0, stdout: 'CollectorPassword\n' });
    const json = await cli(['agent', 'vars', 'list', '--root', R, '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ ok: true, names: ['CollectorPassword'] });
  });

  it('runs the release story through the CLI with the canary set', async () => {
    const codes: [string, number][] = [];
    const step = async (what: string, r: Promise<CliRun>): Promise<CliRun> => {
      const done = await r;
      codes.push([what, done.code]);
      return done;
    };
    await step('install 1.1.0', install('1.1.0'));
    expect(await appStatus(port)).toMatchObject({ version: '1.1.0', collectorConfigured: true });
    await step('install 1.1.1', install('1.1.1'));
    // Back to 1.1.0 before the bad releases: each of them overwrites the inactive slot.
    await step('rollback to 1.1.0', cli(['agent', 'rollback', '--root', R, ...fastHealthFlags()]));
    await step('install 1.2.0-bad', install('1.2.0-bad', 2500));
    await step('install 1.2.0-crash --json', install('1.2.0-crash', 2500, '--json'));
    await step('status', cli(['agent', 'status', '--root', R]));
    await step('status --json', cli(['agent', 'status', '--root', R, '--json']));
    await step('history', cli(['agent', 'history', '--root', R]));
    await step('install 1.0.0 (downgrade)', install('1.0.0'));
    await step('install 1.1.0 --json (already installed)', install('1.1.0', undefined, '--json'));
    await step('recover', cli(['agent', 'recover', '--root', R, '--json']));
    await step('history --json', cli(['agent', 'history', '--root', R, '--json']));
    expect(codes).toEqual([
      ['install 1.1.0', 0],
      ['install 1.1.1', 0],
      ['rollback to 1.1.0', 0],
      ['install 1.2.0-bad', 1],
      ['install 1.2.0-crash --json', 1],
      ['status', 0],
      ['status --json', 0],
      ['history', 0],
      ['install 1.0.0 (downgrade)', 1],
      ['install 1.1.0 --json (already installed)', 1],
      ['recover', 0],
      ['history --json', 0],
    ]);
    const h = (JSON.parse(runs[runs.length - 1]!.stdout) as { deployments: { outcome: string; errorCode: string | null }[] }).deployments;
    expect(h.slice(0, 7).map((x) => `${x.outcome}${x.errorCode ? ` ${x.errorCode}` : ''}`)).toEqual([
      'failed ALREADY_INSTALLED',
      'failed POLICY_DOWNGRADE',
      'rolled-back HEALTH_CHECK_FAILED',
      'rolled-back HEALTH_CHECK_FAILED',
      'committed',
      'committed',
      'committed',
    ]);
    expect(await appStatus(port)).toMatchObject({ version: '1.1.0', configVersion: 2, collectorConfigured: true });
  });

  it('leaves the canary in no output at all', () => {
    expect(runs.length).toBeGreaterThan(15);
    const leaks = runs.filter((r) => holdsCanary(Buffer.from(r.stdout)) || holdsCanary(Buffer.from(r.stderr))).map((r) => r.args.join(' '));
    expect(leaks).toEqual([]);
  });

  it('leaves the canary only in config.json, site-vars.json and the snapshots of config.json, every one of them 0600', async () => {
    const files = await filesUnder(R);
    // The search covers the journal, receipts, the app log, both slots and the snapshots.
    for (const expected of ['var/sonde/agent.db', 'run/app.log', 'slots/status.json', 'etc/config.json', 'etc/site-vars.json']) expect(files).toContain(expected);
    expect(files.some((f) => f.startsWith('var/sonde/receipts/'))).toBe(true);
    expect(files.some((f) => /^data\/snapshots\/[^/]+\/probe\.db$/.test(f))).toBe(true);
    expect(files.some((f) => f.startsWith('slots/a/app/')) && files.some((f) => f.startsWith('slots/b/app/'))).toBe(true);

    const holding: string[] = [];
    for (const f of files) if (holdsCanary(await readFile(join(R, f)))) holding.push(f);
    const allowed = (f: string): boolean => f === 'etc/config.json' || f === 'etc/site-vars.json' || /^data\/snapshots\/[^/]+\/config\.json$/.test(f);
    expect(holding.filter((f) => !allowed(f))).toEqual([]);
    expect(holding).toContain('etc/config.json');
    expect(holding).toContain('etc/site-vars.json');
    // The snapshots of 1.1.1's config (taken by the rollback) and of 1.1.0's (taken by 1.1.1) hold it.
    expect(holding.some((f) => f.startsWith('data/snapshots/'))).toBe(true);
    for (const f of holding) {
      expect((await lstat(join(R, f))).mode & 0o777, f).toBe(0o600);
    }
    expect(JSON.parse(await readFile(join(R, 'etc/config.json'), 'utf8'))).toMatchObject({ collector: { password: CANARY } });
  });

  it('does not pass the canary to the app through its command line or environment', async () => {
    const pid = (await readFile(join(layoutOf(R).run, 'app.pid'), 'utf8')).trim();
    for (const f of ['cmdline', 'environ']) expect(holdsCanary(await readFile(`/proc/${pid}/${f}`)), f).toBe(false);
  });
});
