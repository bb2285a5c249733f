import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/src/daemon/config.js';
import { loadCredentials } from '../../agent/src/daemon/credentials.js';
import { isSondeError } from '../../base/src/errors/sonde-error.js';
import { runAgent } from '../helpers/crash-probe.js';
import { newToken } from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';

/**
 * The daemon's config file and enrollment credentials are parsed strictly at the edge
 * (STYLE.md 4; DESIGN.md, "Config files are validated strictly: unknown keys are refused, and the
 * error names the key"), and `sonde agent run` refuses to start on a bad one with exit code 1.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-config-');
});
afterAll(async () => {
  await tmp.cleanup();
});

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (isSondeError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a refusal');
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isSondeError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a refusal');
}

/** Every leaf key path of a JSON object: `poll.intervalMs`, `root`, … */
function leafKeys(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v && typeof v === 'object' && !Array.isArray(v) ? leafKeys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

let credCounter = 0;
async function credentials(body: Record<string, unknown>, mode = 0o600): Promise<string> {
  const path = join(tmp.dir, `enrollment-${++credCounter}.json`);
  await writeFile(path, JSON.stringify(body), { mode });
  await chmod(path, mode);
  return path;
}

const enrollment = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  format: 'sonde-enrollment-1',
  probeId: 'probe-0001',
  token: newToken(),
  server: { http: 'http://127.0.0.1:8443', mqtt: 'mqtt://127.0.0.1:1883' },
  ...over,
});

describe('parseAgentConfig', () => {
  it('puts the state of the root / in /var/lib/sonde, as sonde agent status looks for it, and takes a maintenance window', () => {
    const c = parseAgentConfig({ credentials: 'enrollment.json', maintenanceWindow: { start: '22:00', end: '04:30' } }, '/etc/sonde');
    expect(c).toMatchObject({ root: '/', state: '/var/lib/sonde', maintenanceWindow: { start: '22:00', end: '04:30' } });
    expect(() => parseAgentConfig({ credentials: 'e.json', maintenanceWindow: { start: '25:00', end: '04:30' } }, '/etc/sonde')).toThrow(/maintenanceWindow.start: must be HH:MM/);
  });

  it('fills every default, resolves paths against the file\'s folder, and freezes the result', () => {
    const c = parseAgentConfig({ credentials: 'enrollment.json', root: 'probe', keyring: 'keys/root.crt' }, '/etc/sonde');
    expect(c).toMatchObject({
      root: '/etc/sonde/probe',
      // The state follows the root as every `sonde agent` command's does (agent-paths.ts).
      state: '/etc/sonde/probe/var/sonde',
      credentials: '/etc/sonde/enrollment.json',
      keyring: '/etc/sonde/keys/root.crt',
      reconnect: { minMs: 1000, maxMs: 60_000 },
      poll: { intervalMs: 60_000, maxIntervalMs: 900_000, afterOfflineMs: 30_000 },
      log: { level: 'info' },
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    [{ credentials: 'e.json', colour: 'blue' }, /unknown key colour/],
    [{ credentials: 'e.json', poll: { intervalMS: 5 } }, /unknown key poll\.intervalMS/],
    [{ credentials: 'e.json', health: { required: 2, windowMS: 10 } }, /unknown key health\.windowMS/],
  ])('refuses an unknown key and names it: %j', (json, message) => {
    const r = codeOf(() => parseAgentConfig(json, '/etc/sonde'));
    expect(r.code).toBe('AGENT_CONFIG_INVALID');
    expect(r.message).toMatch(message);
  });

  it.each([
    [{}, /credentials/],
    [{ credentials: 'e.json', reconnect: { minMs: -1 } }, /reconnect\.minMs/],
    [{ credentials: 'e.json', poll: { intervalMs: '60s' } }, /poll\.intervalMs/],
    [{ credentials: 'e.json', log: { level: 'verbose' } }, /log\.level/],
  ])('refuses a missing or mistyped value and names its key: %j', (json, message) => {
    const r = codeOf(() => parseAgentConfig(json, '/etc/sonde'));
    expect(r.code).toBe('AGENT_CONFIG_INVALID');
    expect(r.message).toMatch(message);
  });
});

describe('docs/examples/agent.json and docs/agent-config.md', () => {
  it('the example config parses, names every key the parser knows, and each is documented', async () => {
    const example = JSON.parse(await readFile(new URL('../../docs/examples/agent.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    expect(() => parseAgentConfig(example, '/etc/sonde')).not.toThrow();
    const inExample = leafKeys(example).sort();
    const withDefaults = leafKeys(parseAgentConfig({ credentials: 'e.json' }, '/') as unknown as Record<string, unknown>);
    expect(withDefaults.filter((k) => !inExample.includes(k))).toEqual([]);

    const doc = await readFile(new URL('../../docs/agent-config.md', import.meta.url), 'utf8');
    const keysSection = doc.slice(doc.indexOf('## Keys'), doc.indexOf('\n## ', doc.indexOf('## Keys') + 1));
    const documented = [...keysSection.matchAll(/^\|\s*`([a-zA-Z.]+)`\s*\|/gm)].map((m) => m[1]!).sort();
    expect(documented).toEqual(inExample);
  });
});

describe('loadCredentials', () => {
  it('reads a 0600 enrollment file on loopback', async () => {
    const c = await loadCredentials(await credentials(enrollment()));
    expect(c.probeId).toBe('probe-0001');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('refuses a credential file readable by others (CREDENTIALS_INVALID, names mode 0600)', async () => {
    const r = await refusal(loadCredentials(await credentials(enrollment(), 0o644)));
    expect(r.code).toBe('CREDENTIALS_INVALID');
    expect(r.message).toMatch(/0600 \(it is 644\)/);
  });

  it.each([
    ['an off-loopback http: server', { server: { http: 'http://192.0.2.10:8080', mqtt: 'mqtts://192.0.2.10:8883' } }, /http:\/\/192\.0\.2\.10:8080 is off loopback/],
    ['an off-loopback mqtt: broker', { server: { http: 'https://fleet.example:8443', mqtt: 'mqtt://fleet.example:1883' }, ca: 'x' }, /off loopback/],
    ['TLS without the server CA', { server: { http: 'https://fleet.example:8443', mqtt: 'mqtts://fleet.example:8883' } }, /needs the server CA/],
    ['an unknown format', { format: 'sonde-enrollment-9' }, /malformed \(format\)/],
    ['a probe id that is not one', { probeId: '../etc' }, /malformed \(probeId\)/],
  ])('refuses %s (CREDENTIALS_INVALID)', async (_name, over, message) => {
    const body = enrollment(over);
    const r = await refusal(loadCredentials(await credentials(body)));
    expect(r.code).toBe('CREDENTIALS_INVALID');
    expect(r.message).toMatch(message);
    expect(r.message).not.toContain(body.token as string);
  });

  it('never echoes the token of a malformed file', async () => {
    const token = newToken();
    const r = await refusal(loadCredentials(await credentials(enrollment({ token, extra: token }))));
    expect(r.code).toBe('CREDENTIALS_INVALID');
    expect(r.message).not.toContain(token);
  });
});

describe('sonde agent run --config (CLI)', () => {
  async function configFile(body: Record<string, unknown>): Promise<string> {
    const path = join(tmp.dir, `agent-${++credCounter}.json`);
    await writeFile(path, JSON.stringify(body));
    return path;
  }

  it('exits 1 with AGENT_CONFIG_INVALID naming an unknown key', async () => {
    const cfg = await configFile({ root: tmp.dir, state: join(tmp.dir, 'state'), credentials: await credentials(enrollment()), reconnect: { minMs: 100, maxMS: 1000 } });
    const r = await runAgent(['agent', 'run', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error AGENT_CONFIG_INVALID: agent config: unknown key reconnect\.maxMS$/m);
  });

  it('exits 1 with AGENT_CONFIG_INVALID for a config file that is missing or not JSON', async () => {
    const missing = await runAgent(['agent', 'run', '--config', join(tmp.dir, 'nope.json')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/AGENT_CONFIG_INVALID: agent config .*nope\.json cannot be read/);
    const bad = join(tmp.dir, 'bad.json');
    await writeFile(bad, '{ "root": ');
    const notJson = await runAgent(['agent', 'run', '--config', bad]);
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toMatch(/AGENT_CONFIG_INVALID: .* is not JSON/);
  });

  it('exits 1 with CREDENTIALS_INVALID for a credential file that is not mode 0600', async () => {
    const cfg = await configFile({ root: tmp.dir, state: join(tmp.dir, 'state'), credentials: await credentials(enrollment(), 0o640) });
    const r = await runAgent(['agent', 'run', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error CREDENTIALS_INVALID: .*must be mode 0600/m);
  });

  it('exits 1 with CREDENTIALS_INVALID for an off-loopback http: server, and says nothing of the token', async () => {
    const body = enrollment({ server: { http: 'http://10.0.0.5:8080', mqtt: 'mqtt://127.0.0.1:1883' } });
    const cfg = await configFile({ root: tmp.dir, state: join(tmp.dir, 'state'), credentials: await credentials(body) });
    const r = await runAgent(['agent', 'run', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error CREDENTIALS_INVALID: http:\/\/10\.0\.0\.5:8080 is off loopback/m);
    expect(r.stdout + r.stderr).not.toContain(body.token as string);
  });
});
