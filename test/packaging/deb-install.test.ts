import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDebianContainer, type DebianContainer } from '../helpers/debian-container.js';
import { daemonSamples } from '../helpers/daemon-harness.js';
import { REPO } from '../helpers/systemd-container.js';

/**
 * Issue 21: the Debian packages as a customer installs them. scripts/build-deb builds both from
 * this checkout; lintian finds no error; `dpkg -i` of both on a clean Debian (a container booting
 * systemd, see debian-container.ts) starts the server, a probe enrolled with `sonde server
 * enroll` starts its agent and reports; `apt-get remove` leaves the probe's and the server's data;
 * `purge` removes it. Needs root and LXC (CI has both), else skipped.
 */
const run = promisify(execFile);
const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/lxc-start') && existsSync('/usr/bin/dpkg-deb');
if (!canRun && process.env['CI'] === 'true') throw new Error('the packaging test needs root, lxc and dpkg-dev under CI');

let out: string;
let debs: string[];
let c: DebianContainer;

beforeAll(async () => {
  if (!canRun) return;
  out = await mkdtemp(join(tmpdir(), 'sonde-debs-'));
  await run(join(REPO, 'scripts/build-deb'), ['--no-build', '--out', out], { cwd: REPO, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  debs = (await readdir(out)).filter((f) => f.endsWith('.deb')).sort();
  c = await startDebianContainer(await mkdtemp(join(tmpdir(), 'sonde-deb-ct-')));
  await cp(out, c.shared, { recursive: true });
}, 400_000);

afterAll(async () => {
  if (!canRun) return;
  await c?.destroy();
  await rm(out, { recursive: true, force: true });
});

async function sh(line: string, timeoutMs = 120_000): Promise<string> {
  const r = await c.sh(line, timeoutMs);
  if (r.code !== 0) throw new Error(`${line}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function until(what: string, line: string, ok: (out: string) => boolean, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const r = await c.sh(line, 20_000);
    last = `${r.stdout}${r.stderr}`;
    if (r.code === 0 && ok(r.stdout)) return r.stdout;
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last: ${last}`);
}

const api = (path: string, token: string) =>
  `node -e 'fetch("http://127.0.0.1:8440${path}",{headers:{authorization:"Bearer ${token}"}}).then(async r=>{console.log(r.status, await r.text())})'`;

describe.skipIf(!canRun)('the Debian packages', () => {
  it('scripts/build-deb writes DIR/sonde-agent_<version>_<arch>.deb and DIR/sonde-server_<version>_<arch>.deb', () => {
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    expect(debs).toEqual([`sonde-agent_0.1.0_${arch}.deb`, `sonde-server_0.1.0_${arch}.deb`]);
  });

  it('passes lintian with no error (and no warning)', async () => {
    const r = await run('lintian', debs.map((d) => join(out, d)), { timeout: 300_000 }).catch((e: { stdout: string; stderr: string; code: number }) => e);
    const text = `${r.stdout}`;
    expect(text.split('\n').filter((l) => /^E: /.test(l))).toEqual([]);
    expect(text.split('\n').filter((l) => /^W: /.test(l))).toEqual([]);
  }, 300_000);

  it('installs with dpkg -i on a clean Debian: the server starts, and the agent once the probe is enrolled, and it reports', async () => {
    await sh(`dpkg -i ${debs.map((d) => `/w/${d}`).join(' ')}`);
    expect(await sh('readlink -f /usr/bin/sonde')).toBe('/usr/lib/sonde/dist/cli/src/sonde.js\n');
    await until('the server active', 'systemctl is-active sonde-server', (o) => o.trim() === 'active');
    // Not enrolled yet: the agent's unit is enabled but waits for its credentials.
    expect((await c.sh('systemctl is-enabled sonde-agent')).stdout.trim()).toBe('enabled');
    expect((await c.sh('systemctl is-active sonde-agent')).stdout.trim()).toBe('inactive');
    const journal = await until('the admin token in the journal', 'journalctl -u sonde-server -o cat --no-pager', (o) => /admin token: \S+/.test(o));
    const token = /admin token: (\S+)/.exec(journal)![1]!;
    await until('the server answers', api('/healthz', token), (o) => o.startsWith('200'));
    await sh('sonde server enroll probe-deb --data /var/lib/sonde-server --out /etc/sonde/enrollment.json && chmod 600 /etc/sonde/enrollment.json');
    await sh('systemctl start sonde-agent');
    await until('the agent active', 'systemctl is-active sonde-agent', (o) => o.trim() === 'active');
    const probe = await until('the probe online with a state', api('/api/v1/probes/probe-deb', token), (o) => o.startsWith('200') && o.includes('"online":true') && !o.includes('"stateAt":null'));
    expect(probe).toContain('"agentVersion":"0.1.0"');
    // Hardened as packaged: systemd reports what it enforces.
    const security = await sh('systemd-analyze security --no-pager sonde-server sonde-agent');
    expect(security).toMatch(/sonde-server\.service\s+\d\.\d (OK|SAFE)/);
  }, 300_000);

  it('the packaged agent updates itself under its hardened unit: an agent pack made by scripts/build-agent-pack from a newer package, sent by the server', async () => {
    // The vendor's side, on this machine: the next version's package, and the agent pack made from it.
    const s = await daemonSamples();
    const next = await mkdtemp(join(tmpdir(), 'sonde-debs-next-'));
    try {
      await run(join(REPO, 'scripts/build-deb'), ['--no-build', '--out', next, '--version', '9.0.1'], { cwd: REPO, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
      const deb = (await readdir(next)).find((f) => f.startsWith('sonde-agent_9.0.1_'))!;
      await run(join(REPO, 'scripts/build-agent-pack'), ['--deb', join(next, deb), '--model', 'probe-x1', '-o', join(c.shared, 'agent-9.0.1.spk'), '--', '--sign', s.keys.signerKey, '--cert', s.keys.signerCert], { cwd: REPO, timeout: 300_000 });
      await cp(s.keys.rootCert, join(c.shared, 'root.crt'));
    } finally {
      await rm(next, { recursive: true, force: true });
    }
    // The customer's side: both trust the vendor's root, then the server sends the pack.
    await sh(`install -m 644 /w/root.crt /etc/sonde/root.crt && sed -i 's|"credentials"|"keyring": "/etc/sonde/root.crt", "credentials"|' /etc/sonde/agent.json && sed -i 's|"port"|"keyring": "/etc/sonde/root.crt", "port"|' /etc/sonde/server.json`);
    await sh('systemctl restart sonde-server sonde-agent');
    const token = (await sh('journalctl -u sonde-server -o cat --no-pager')).match(/admin token: (\S+)/)![1]!;
    await until('the probe online again', api('/api/v1/probes/probe-deb', token), (o) => o.startsWith('200') && o.includes('"online":true'));
    const pid = (await sh('systemctl show -p MainPID --value sonde-agent')).trim();
    const sent = await sh(
      `node -e 'const h={authorization:"Bearer ${token}"};(async()=>{const b=require("fs").readFileSync("/w/agent-9.0.1.spk");let r=await fetch("http://127.0.0.1:8440/api/v1/packs",{method:"POST",headers:h,body:b});const p=await r.json();r=await fetch("http://127.0.0.1:8440/api/v1/probes/probe-deb/commands",{method:"POST",headers:{...h,"content-type":"application/json"},body:JSON.stringify({type:"install",packSha256:p.sha256})});console.log(r.status,await r.text())})()'`,
    );
    expect(sent).toMatch(/^20[12] /);
    await until('the probe reports agent 9.0.1', api('/api/v1/probes/probe-deb', token), (o) => o.includes('"agentVersion":"9.0.1"') && o.includes('"online":true'), 180_000);
    // The launcher restarted into the new agent itself: the unit's main process is the same one,
    // and systemd restarted nothing.
    expect((await sh('systemctl show -p MainPID --value sonde-agent')).trim()).toBe(pid);
    expect((await sh('systemctl show -p NRestarts --value sonde-agent')).trim()).toBe('0');
    const status = JSON.parse(await sh('sonde agent status --json')) as { agent: { runs: string; version: string; trial: unknown } };
    expect(status.agent).toMatchObject({ runs: 'a', version: '9.0.1', trial: null });
    // Stopped as systemd stops it (SIGTERM to the launcher): the new agent drains and the unit ends.
    const stop = await c.sh('timeout 60 systemctl stop sonde-agent; echo stop=$?; systemctl is-active sonde-agent; ps -eo pid,ppid,stat,args | grep -v grep | grep -E "agent-launch|sonde.js agent"; journalctl -u sonde-agent -o cat --no-pager | tail -n 10', 120_000);
    expect(stop.stdout, stop.stdout).toMatch(/stop=0\ninactive/);
  }, 600_000);

  it('apt-get remove stops both and leaves the probe\'s and the server\'s data; purge removes it', async () => {
    await sh('apt-get remove -y -q sonde-server sonde-agent', 180_000);
    expect((await c.sh('systemctl is-active sonde-agent sonde-server')).stdout.trim().split('\n')).toEqual(['inactive', 'inactive']);
    await sh('test ! -e /usr/lib/sonde && test ! -e /usr/bin/sonde');
    await sh('test -s /var/lib/sonde/agent.db && test -s /etc/sonde/enrollment.json && test -s /var/lib/private/sonde-server/sonde.db');
    await sh('test -e /etc/sonde/agent.json && test -e /etc/sonde/server.json'); // conffiles stay until purge
    // The vendor root the admin put in /etc/sonde (the self-update above) is the admin's: dpkg keeps
    // files it does not own, so the admin removes it.
    await sh('rm -f /etc/sonde/root.crt');
    await sh('apt-get purge -y -q sonde-server sonde-agent', 180_000);
    await sh('test ! -e /var/lib/sonde && test ! -e /var/lib/private/sonde-server && test ! -e /var/lib/sonde-server && test ! -e /srv/sonde && test ! -e /etc/sonde');
    expect((await c.sh('dpkg -l sonde-agent sonde-server 2>&1')).stdout).not.toMatch(/^(ii|rc) /m);
  }, 400_000);
});
