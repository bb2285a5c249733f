import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_SKIP, labClient, openLab, sonde } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';

/**
 * The lab runs the vendor's own releases (issue 19): a lab file names a line of two packs built
 * with `sonde pack` from a small non-sample app (a shell service, busybox httpd, under the exec
 * runner, encrypted for the vendor's fleet key) and a profile of two probes with a site variable;
 * `sonde lab up --config lab.json --profile NAME` brings them up on that line's last release. A
 * lab file with a mistake is refused before anything is made.
 */
const LAB = 'ecfg';

const SERVE = `#!/bin/sh
conf="$PROBE_ROOT/etc/config.json"
port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$conf")
sed -n 's/.*"branch": *"\\([^"]*\\)".*/\\1/p' "$conf" > "$PROBE_SLOT/app/www/branch"
exec busybox httpd -f -p "127.0.0.1:$port" -h "$PROBE_SLOT/app/www"
`;

let W: string;

async function ok(args: string[]): Promise<string> {
  const r = await sonde(args);
  expect(r.code, `sonde ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function websvc(version: string): Promise<string> {
  const src = join(W, `websvc-${version}`);
  await mkdir(join(src, 'app', 'bin'), { recursive: true });
  await mkdir(join(src, 'app', 'www'), { recursive: true });
  await mkdir(join(src, 'config'), { recursive: true });
  await writeFile(join(src, 'app', 'www', 'health'), 'ok\n');
  await writeFile(join(src, 'app', 'www', 'version'), `${version}\n`);
  await writeFile(join(src, 'app', 'bin', 'serve'), SERVE);
  await chmod(join(src, 'app', 'bin', 'serve'), 0o755);
  await writeFile(join(src, 'app', 'release.json'), JSON.stringify({ product: 'websvc', version, runner: { type: 'exec', command: ['bin/serve'] }, db: { min: 0, max: 0 }, config: { min: 0, max: 0 }, health: { path: '/health' } }));
  await writeFile(join(src, 'config', 'config.template.json'), JSON.stringify({ port: 8080, branch: '#{BranchCode}' }));
  await writeFile(join(src, 'pack.json'), JSON.stringify({ kind: 'product', product: 'websvc', version, compatible: ['probe-x1'], securityVersion: 0, payloads: { app: 'app', config: 'config' } }));
  const out = join(W, 'packs', `websvc-${version}.spk`);
  await mkdir(join(W, 'packs'), { recursive: true });
  await ok(['pack', src, '--sign', join(W, 'K', 'signer.key'), '--cert', join(W, 'K', 'signer.crt'), '--encrypt-for', join(W, 'K', 'fleet.crt'), '-o', out]);
  return out;
}

const labFile = {
  format: 'sonde-lab-config-1',
  keys: { keyring: 'K/root.crt', recipientKey: 'K/fleet.key' },
  lines: { websvc: { packs: ['packs/websvc-1.0.0.spk', 'packs/websvc-2.0.0.spk'], channel: 'beta' } },
  profiles: {
    'branch-lyon': { line: 'websvc', count: 2, siteVars: { BranchCode: 'LYON-01' } },
    training: { line: 'stable' },
  },
};

describe.skipIf(LAB_SKIP)('a lab brought up from the vendor lab file', () => {
  let lab: Lab;
  let names: string[];

  beforeAll(async () => {
    W = await mkdtemp(join(tmpdir(), 'sonde-lab-config-'));
    await ok(['keys', 'init-ca', '--dir', join(W, 'K')]);
    await ok(['keys', 'issue-signer', '--dir', join(W, 'K')]);
    await ok(['keys', 'issue-recipient', '--dir', join(W, 'K'), '--name', 'fleet']);
    await websvc('1.0.0');
    await websvc('2.0.0');
    await writeFile(join(W, 'lab.json'), JSON.stringify(labFile, null, 2));
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    const up = await sonde(['lab', 'up', '--config', join(W, 'lab.json'), '--profile', 'branch-lyon', '--lab', LAB]);
    expect(up.code, up.stderr).toBe(0);
    names = up.stdout.trim().split('\n');
    lab = await openLab(LAB);
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    await rm(W, { recursive: true, force: true });
  }, 120_000);

  it("brings up the profile's count of probes on the line's last release, healthy at the server", async () => {
    expect(names).toEqual([`${LAB}-01`, `${LAB}-02`]);
    const client = await labClient(lab);
    for (const name of names) expect(await client.probe(name), name).toMatchObject({ version: '2.0.0', health: 'ok', channel: 'beta' });
    const ls = JSON.parse(await ok(['lab', 'ls', '--json', '--lab', LAB])) as { probes: { name: string; line: string; version: string }[] };
    expect(ls.probes.map((p) => [p.line, p.version])).toEqual([['websvc', '2.0.0'], ['websvc', '2.0.0']]);
  });

  it('runs the vendor service under the exec runner, with the site variable the profile set', async () => {
    const name = names[0]!;
    const get = async (path: string): Promise<string> => (await lab.exec(name, ['/usr/bin/busybox', 'wget', '-qO-', `http://127.0.0.1:8080${path}`])).stdout.trim();
    expect(await get('/version')).toBe('2.0.0');
    expect(await get('/branch')).toBe('LYON-01');
    const st = await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'status', '--json']);
    expect(JSON.parse(st.stdout)).toMatchObject({ product: 'websvc', version: '2.0.0', runner: 'exec', app: { running: true } });
    // Both packs went through the probe's own install, in order.
    const history = (JSON.parse((await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'history', '--json'])).stdout) as { deployments: { pack: { version: string }; outcome: string }[] }).deployments;
    expect(history.map((h) => [h.pack.version, h.outcome])).toEqual([['2.0.0', 'committed'], ['1.0.0', 'committed']]);
  });
});

describe.skipIf(LAB_SKIP)('a lab file with a mistake', () => {
  it('is refused with LAB_CONFIG_INVALID naming the mistake, before any lab is made', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sonde-lab-config-bad-'));
    try {
      const cases: [object, string, RegExp][] = [
        [{ ...labFile, lines: { websvc: { packs: ['x.spk'], rollout: 'canary' } } }, 'branch-lyon', /lines\.websvc: unknown key rollout/],
        [labFile, 'no-such-profile', /no profile no-such-profile \(profiles: branch-lyon, training\)/],
        [{ ...labFile, profiles: { p: { line: 'nightly' } } }, 'p', /profiles\.p\.line: no line nightly/],
        [{ ...labFile, profiles: { p: { line: 'websvc', siteVars: { 'bad name': 'x' } } } }, 'p', /siteVars/],
      ];
      for (const [file, profile, why] of cases) {
        await writeFile(join(dir, 'lab.json'), JSON.stringify(file));
        const r = await sonde(['lab', 'up', '--config', join(dir, 'lab.json'), '--profile', profile, '--lab', 'ebad']);
        expect(r.code, JSON.stringify(file)).not.toBe(0);
        expect(r.stderr + r.stdout).toContain('LAB_CONFIG_INVALID');
        expect(r.stderr + r.stdout).toMatch(why);
      }
      const ls = JSON.parse((await sonde(['lab', 'ls', '--json', '--lab', 'ebad'])).stdout) as { exists: boolean };
      expect(ls.exists).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
