import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bringUp, fileHolds, filesUnder, LAB_SKIP, labSamples, probeStatus, sonde, waitUntil } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';
import type { LabServerClient } from '../../lxc/src/lab-server.js';

/**
 * Two old-stable (1.0.0) LXC probes. One is sent 1.1.1, whose `requires` range excludes 1.0.0: it
 * refuses it with POLICY_REQUIRES_UNMET and the server shows why, on the command and on the probe.
 * The other gets a site variable on the probe itself, then 1.1.0, whose config ops fill it in: the
 * value reaches that probe's config and nowhere else (not the server's files, not any log).
 */
const LAB = 'ereq';

interface Detail {
  version: string | null;
  health: string | null;
  lastDeployment: { outcome: string; errorCode: string | null; version: string | null } | null;
  commands: { commandId: string; status: string; errorCode: string | null }[];
}

describe.skipIf(LAB_SKIP)('release ranges and site variables on old-stable LXC probes', () => {
  let lab: Lab;
  let client: LabServerClient;
  let names: string[] = [];

  beforeAll(async () => {
    ({ lab, client, names } = await bringUp(LAB, 2, 'old-stable'));
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
  }, 120_000);

  const detail = async (name: string): Promise<Detail> => (await client.probe(name)) as unknown as Detail;

  it('refuses 1.1.1 on 1.0.0 with POLICY_REQUIRES_UNMET, stays whole, and the server shows why', async () => {
    const name = names[0]!;
    expect((await detail(name)).version).toBe('1.0.0');
    const { body: pack } = await client.api.upload<{ sha256: string; requires: string }>('/api/v1/packs', labSamples().packs['1.1.1']);
    expect(pack.requires).toBe('>=1.1.0 <1.1.1');
    const { body: cmd } = await client.api.json<{ commandId: string }>('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: pack.sha256 });
    const failed = await waitUntil(
      'the refusal at the server',
      async () => {
        const { body } = await client.api.json<{ status: string; errorCode: string | null }>('GET', `/api/v1/commands/${cmd.commandId}`);
        return body.status === 'failed' ? body : null;
      },
      60_000,
    );
    expect(failed.errorCode).toBe('POLICY_REQUIRES_UNMET');
    const d = await waitUntil('the probe view with the refusal', async () => {
      const x = await detail(name);
      return x.lastDeployment?.errorCode === 'POLICY_REQUIRES_UNMET' ? x : null;
    });
    expect(d).toMatchObject({ version: '1.0.0', health: 'ok' });
    const own = await probeStatus(lab, name);
    expect(own.version).toBe('1.0.0');
    expect(own.app.running).toBe(true);
    expect(own.lastOutcome).toMatchObject({ errorCode: 'POLICY_REQUIRES_UNMET' });
  });

  it("fills a site variable set on one probe into its config, and it is on no server file and in no log", async () => {
    const name = names[1]!;
    const secret = `site-secret-${randomBytes(9).toString('hex')}`;
    const set = await lab.exec(name, ['/usr/bin/node', '/opt/sonde/dist/cli/src/sonde.js', 'agent', 'vars', 'set', 'CollectorPassword', '--root', '/'], `${secret}\n`);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout + set.stderr).not.toContain(secret);
    const { body: pack } = await client.api.upload<{ sha256: string }>('/api/v1/packs', labSamples().packs['1.1.0']);
    await client.api.json('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: pack.sha256 });
    await waitUntil(`${name} on 1.1.0`, async () => {
      const x = await detail(name);
      return x.version === '1.1.0' && x.health === 'ok' && x.commands.some((c) => c.status === 'succeeded');
    }, 90_000);

    // It reached the probe's config.
    const config = JSON.parse(await readFile(join(lab.upperOf(name), 'etc/config.json'), 'utf8')) as { collector: { password: string } };
    expect(config.collector.password).toBe(secret);
    // The other probe never had it.
    expect(await fileHolds(join(lab.upperOf(names[0]!), 'etc/config.json'), secret)).toBe(false);

    // Nowhere on the server: its database (and WAL), pack store, logs and console output.
    const serverFiles = [...(await filesUnder(lab.paths.serverData)), lab.paths.serverLog, lab.paths.serverOut];
    expect(serverFiles.length).toBeGreaterThan(3);
    for (const f of serverFiles) expect(await fileHolds(f, secret), f).toBe(false);
    // In no log on either probe: agent, FTP, boot, console, and the app's own log.
    for (const n of names) {
      for (const f of ['var/log/sonde-agent.log', 'var/log/vsftpd.log', 'var/log/boot.log']) expect(await fileHolds(join(lab.upperOf(n), f), secret), `${n} ${f}`).toBe(false);
      expect(await fileHolds(join(lab.paths.probes, n, 'console.log'), secret)).toBe(false);
      const appLog = await lab.exec(n, ['/bin/cat', '/run/app.log']);
      expect(appLog.code).toBe(0);
      expect(appLog.stdout).not.toContain(secret);
    }
    const ls = await sonde(['lab', 'ls', '--json', '--lab', LAB]);
    expect(ls.stdout).not.toContain(secret);
    // Without --lab, the probe's name says its lab.
    const logs = await sonde(['lab', 'logs', name]);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('"msg":"agent started"');
    expect(logs.stdout).not.toContain(secret);
  });
});
