import { copyFile, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { connectionFailureReason } from '../../agent/src/link/failure-log.js';
import { daemonSamples, killDaemon, makeProbe, spawnDaemon, waitUntil, type DaemonProcess, type ProbeFixture } from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';
import { stopApp } from '../helpers/probe.js';
import { sonde } from '../helpers/probe-state.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * The agent CLI on a real probe (issue 19): `sonde agent status` finds what the daemon did (the
 * state folder comes from the agent config), read-only commands never make a probe root or a
 * database and name a path that is not one, `vars needed` lists a pack's site variables before
 * the install, and the daemon's log says why it cannot connect and how each install ended.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let probe: ProbeFixture;
let daemon: DaemonProcess | undefined;

const run = (args: string[], env: Record<string, string> = {}): ReturnType<typeof sonde> => sondeEnv(args, env);

/** `sonde` with extra environment (SONDE_AGENT_CONFIG), from a neutral working directory. */
async function sondeEnv(args: string[], env: Record<string, string>): ReturnType<typeof sonde> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return await sonde(args, '', tmp.dir);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

beforeAll(async () => {
  tmp = await scratch('sonde-agent-defaults-');
  s = await daemonSamples();
  // Nothing listens on these ports: the daemon works offline, from its FTP drop.
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  probe = await makeProbe(tmp.dir, {
    samples: s,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpBase: `http://127.0.0.1:${httpPort}`,
    config: { state: join(tmp.dir, 'agent-state'), drop: { scanIntervalMs: 100, stableMs: 200 }, log: { level: 'info' } },
  });
}, 120_000);

afterAll(async () => {
  await killDaemon(daemon);
  // The app the daemon's install started outlives the daemon, as on a probe: stop it too.
  await stopApp(probe.root).catch(() => undefined);
  await tmp.cleanup();
});

describe('sonde agent on a probe with a daemon', () => {
  it('status finds what the daemon installed: the state folder comes from the agent config', async () => {
    daemon = spawnDaemon(probe.configPath);
    await waitUntil('the daemon started', () => daemon!.logs().some((l) => l.msg === 'agent started'), 30_000);
    const inbox = join(tmp.dir, 'agent-state', 'inbox');
    await mkdir(inbox, { recursive: true });
    await copyFile(s.packs['1.0.0'], join(inbox, '.upload.part'));
    await rename(join(inbox, '.upload.part'), join(inbox, 'probe-app-1.0.0.spk'));
    await waitUntil('the install committed', () => daemon!.logs().some((l) => l.msg === 'install committed'), 60_000);

    // The operator on the probe: no --state, the agent config names it.
    const byConfig = await run(['agent', 'status', '--json'], { SONDE_AGENT_CONFIG: probe.configPath });
    expect(byConfig.code, byConfig.stderr).toBe(0);
    expect(JSON.parse(byConfig.stdout)).toMatchObject({ root: probe.root, version: '1.0.0', runner: 'process', lastOutcome: { outcome: 'committed' } });
    const byRoot = await run(['agent', 'history', '--root', probe.root, '--json'], { SONDE_AGENT_CONFIG: probe.configPath });
    expect(JSON.parse(byRoot.stdout)).toEqual({ ok: true, deployments: [expect.objectContaining({ outcome: 'committed', after: expect.objectContaining({ version: '1.0.0' }) })] });
    // Nothing was made at the default state folder of that root.
    expect(existsSync(join(probe.root, 'var', 'sonde', 'agent.db'))).toBe(false);
  }, 120_000);

  it("logs each install's start and its outcome with the code, and why it cannot reach the server", async () => {
    const logs = daemon!.logs();
    expect(logs.find((l) => l.msg === 'install started')).toMatchObject({ pack: expect.stringContaining('probe-app-1.0.0.spk') });
    expect(logs.find((l) => l.msg === 'install committed')).toMatchObject({ version: '1.0.0', outcome: 'committed', code: null });
    expect(logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('mqtt connection failed'))).toMatchObject({ reason: 'server unreachable', err: expect.stringContaining('ECONNREFUSED') });
    await killDaemon(daemon);
    daemon = undefined;
  });
});

describe('read-only agent commands', () => {
  it('never create a probe root: a missing or empty path is NOT_A_PROBE_ROOT, and stays as it was', async () => {
    const missing = join(tmp.dir, 'no-such-probe');
    const empty = join(tmp.dir, 'empty');
    await mkdir(empty);
    for (const root of [missing, empty]) {
      for (const args of [['status'], ['history'], ['vars', 'list']]) {
        const r = await run(['agent', ...args, '--root', root]);
        expect(r.code, `${args.join(' ')} ${root}`).not.toBe(0);
        expect(r.stdout + r.stderr).toContain('NOT_A_PROBE_ROOT');
      }
    }
    expect(existsSync(missing)).toBe(false);
    expect(await readdir(empty)).toEqual([]);
  });

  it('read a probe with no install yet without creating its agent.db', async () => {
    const root = join(tmp.dir, 'fresh');
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc', 'config.json'), '{"port": 8080}\n');
    const r = await run(['agent', 'status', '--root', root, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: null, runner: null, lastOutcome: null });
    expect(await readdir(root)).toEqual(['etc']);
  });
});

describe('sonde agent vars needed', () => {
  it("lists the site variables a pack's config needs, and which this probe lacks, before the install", async () => {
    const root = join(tmp.dir, 'before-install');
    await mkdir(join(root, 'etc'), { recursive: true });
    const needed = (pack: string) => run(['agent', 'vars', 'needed', pack, '--root', root, '--keyring', s.keys.rootCert, '--key', s.keys.fleetKey, '--json']);
    const r = await needed(s.packs['1.1.0']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, names: ['CollectorPassword'], missing: ['CollectorPassword'] });
    expect(JSON.parse((await needed(s.packs['1.0.0'])).stdout)).toEqual({ ok: true, names: [], missing: [] });
    const set = await sonde(['agent', 'vars', 'set', 'CollectorPassword', '--root', root], 'canary-value\n');
    expect(set.code, set.stderr).toBe(0);
    const after = await needed(s.packs['1.1.0']);
    expect(JSON.parse(after.stdout)).toEqual({ ok: true, names: ['CollectorPassword'], missing: [] });
    expect(after.stdout).not.toContain('canary-value');
    // Only the config payload was looked at, in a scratch folder: the probe root holds what it held.
    expect((await readdir(root)).sort()).toEqual(['etc']);
  });

  it('refuses a pack signed by nobody the keyring trusts, with its code', async () => {
    const other = join(tmp.dir, 'other-keyring.crt');
    await copyFile(s.keys.secondRootCert, other);
    const r = await run(['agent', 'vars', 'needed', s.packs['1.1.0'], '--root', join(tmp.dir, 'x'), '--keyring', other, '--json']);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('CHAIN_UNTRUSTED');
  });
});

describe('connection failure reasons', () => {
  it('say bad token, unreachable or TLS pin mismatch in the words an operator needs', () => {
    expect(connectionFailureReason('Connection refused: Not authorized')).toMatch(/^bad token/);
    expect(connectionFailureReason('the server answered 401')).toMatch(/^bad token/);
    expect(connectionFailureReason('connect ECONNREFUSED 127.0.0.1:1883')).toBe('server unreachable');
    expect(connectionFailureReason('unable to verify the first certificate')).toMatch(/^TLS pin mismatch/);
    expect(connectionFailureReason('self-signed certificate in certificate chain')).toMatch(/^TLS pin mismatch/);
  });
});
