import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/src/daemon/config.js';

/**
 * images/sonde-agent.service: the unit a probe runs the agent under. Its settings must match what
 * the daemon does: sd_notify from a child process (Type=notify, NotifyAccess=all), a watchdog,
 * SIGTERM that drains through a whole health window, restart after a failure.
 */
const UNIT = fileURLToPath(new URL('../../images/sonde-agent.service', import.meta.url));

function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

const seconds = (v: string): number => {
  const m = /^(\d+)(s|min)?$/.exec(v);
  if (!m) throw new Error(`not a duration: ${v}`);
  return Number(m[1]) * (m[2] === 'min' ? 60 : 1);
};

describe('images/sonde-agent.service', () => {
  it('runs `sonde agent run --config /etc/sonde/agent.json` as a notify service with a watchdog, draining on SIGTERM', async () => {
    const d = directives(await readFile(UNIT, 'utf8'));
    const one = (k: string): string => {
      const v = d.get(k);
      expect(v, k).toHaveLength(1);
      return v![0]!;
    };
    expect(one('Service.Type')).toBe('notify');
    // systemd-notify is a child of the agent: only NotifyAccess=all accepts its messages.
    expect(one('Service.NotifyAccess')).toBe('all');
    expect(seconds(one('Service.WatchdogSec'))).toBeGreaterThanOrEqual(10);
    expect(one('Service.ExecStart')).toMatch(/^\/usr\/bin\/node \S+\/sonde\.js agent run --config \/etc\/sonde\/agent\.json$/);
    expect(one('Service.KillSignal')).toBe('SIGTERM');
    expect(one('Service.Restart')).toBe('on-failure');
    // A drain may wait for a whole health window (the default is 60 s) plus migration and start.
    const healthWindowS = parseAgentConfig({ credentials: 'e.json' }, '/').health.windowMs ?? 60_000;
    expect(seconds(one('Service.TimeoutStopSec'))).toBeGreaterThanOrEqual(healthWindowS / 1000 + 60);
    expect(one('Install.WantedBy')).toBe('multi-user.target');
  });

  it.skipIf(!existsSync('/usr/bin/systemd-analyze') && !process.env.CI)('passes systemd-analyze verify', async () => {
    const r = await promisify(execFile)('/usr/bin/systemd-analyze', ['verify', '--man=no', UNIT]).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
  });
});
