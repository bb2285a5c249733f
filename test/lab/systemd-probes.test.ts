import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_SKIP, labClient, labSamples, openLab, sonde, waitUntil } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';

/**
 * The contract `sonde lab up --count 1 --line stable --init systemd` (issue 19): a probe whose PID
 * 1 is systemd, whose agent and FTP drop are units, and whose app runs as the unit its release
 * ships. Support staff's FTP drop of 1.1.1 installs on it; a release that fails its health check
 * is rolled back to the unit; a power cut (SIGKILL to the whole probe) and a boot bring the unit
 * and the agent back without the agent restarting anything. Real LXC, real systemd.
 */
const LAB = 'esystemd';

interface ServerView {
  version: string;
  health: string;
  lastCommitted: { version: string } | null;
  lastDeployment?: { outcome: string; version: string } | null;
}

describe.skipIf(LAB_SKIP)('lab probes whose PID 1 is systemd', () => {
  let lab: Lab;
  let name: string;

  const status = async (): Promise<Record<string, unknown>> => {
    const r = await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'status', '--root', '/', '--state', '/var/lib/sonde', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const active = async (unit: string): Promise<string> => (await lab.exec(name, ['systemctl', 'is-active', unit])).stdout.trim();

  beforeAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    const up = await sonde(['lab', 'up', '--count', '1', '--line', 'stable', '--init', 'systemd', '--lab', LAB]);
    expect(up.code, up.stderr).toBe(0);
    name = up.stdout.trim();
    lab = await openLab(LAB);
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
  }, 120_000);

  it('boots systemd as PID 1, runs the agent, the FTP drop and the app as units, and reports healthy on 1.1.0', async () => {
    expect(name).toBe(`${LAB}-01`);
    expect((await lab.exec(name, ['cat', '/proc/1/comm'])).stdout.trim()).toBe('systemd');
    for (const unit of ['sonde-agent.service', 'sonde-ftp.service', 'probe-app.service']) expect(await active(unit), unit).toBe('active');
    const st = await status();
    expect(st).toMatchObject({ version: '1.1.0', runner: 'systemd', app: { running: true } });
    expect((st.app as { pid: number }).pid).toBe(Number((await lab.exec(name, ['systemctl', 'show', '-p', 'MainPID', '--value', 'probe-app.service'])).stdout.trim()));
    const logs = await sonde(['lab', 'logs', name, '--source', 'app', '--lab', LAB]);
    expect(logs.stdout).toContain('"event":"listening"');
  });

  it('installs 1.1.1 dropped over FTP; the 1.1.0 unit runs on', async () => {
    const put = await sonde(['lab', 'ftp-put', name, labSamples().packs['1.1.1'], '--lab', LAB]);
    expect(put.code, put.stderr).toBe(0);
    const client = await labClient(lab);
    await waitUntil('1.1.1 at the server', async () => {
      const p = (await client.probe(name)) as unknown as ServerView | null;
      return p && p.version === '1.1.1' && p.health === 'ok' && p.lastCommitted?.version === '1.1.1' ? p : null;
    }, 90_000);
    expect(await active('probe-app.service')).toBe('active');
    expect(await status()).toMatchObject({ version: '1.1.1', appVersion: '1.1.0', runner: 'systemd' });
  });

  it('rolls back a release that fails its health check, and the unit serves again', async () => {
    const put = await sonde(['lab', 'ftp-put', name, labSamples().packs['1.2.0-bad'], '--lab', LAB]);
    expect(put.code, put.stderr).toBe(0);
    const st = await waitUntil('the bad release rolled back', async () => {
      const s = await status();
      const last = s.lastOutcome as { version: string; outcome: string } | null;
      return last?.version === '1.2.0-bad' && last.outcome === 'rolled-back' ? s : null;
    }, 90_000);
    expect(st).toMatchObject({ version: '1.1.1', runner: 'systemd', app: { running: true } });
    expect(await active('probe-app.service')).toBe('active');
  });

  it('comes back from a power cut with the app unit started by systemd, not restarted by the agent', async () => {
    const before = await status();
    await lab.stopProbe(name, true);
    await lab.startProbe(name);
    await waitUntil('the unit active after the boot', async () => (await lab.exec(name, ['systemctl', 'is-active', 'probe-app.service'])).stdout.trim() === 'active', 60_000);
    await waitUntil('the agent healthy at the server', async () => {
      const p = (await (await labClient(lab)).probe(name)) as unknown as (ServerView & { online: boolean }) | null;
      return p?.online && p.health === 'ok' ? p : null;
    }, 90_000);
    const after = await status();
    expect(after).toMatchObject({ version: before.version, runner: 'systemd', app: { running: true } });
    // The agent found the unit running (systemd started it at boot): its journal shows one start.
    const starts = (await lab.exec(name, ['journalctl', '-b', '--no-pager', '-o', 'cat', '-u', 'probe-app.service'])).stdout.split('\n').filter((l) => l.includes('"event":"starting"'));
    expect(starts).toHaveLength(1);
  });
});
