import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * SONDE_CRASH_ROLE (docs/agent.md, "Fault injection"): a power-cut campaign cuts right after a
 * point in one process of the agent (the daemon, or the installer it forks for an install), since
 * both pass some of the same points and `#n` counts within a process. Runs the built fault-point
 * module in a child, as the agent's processes do.
 */
const MODULE = pathToFileURL(resolve(import.meta.dirname, '../../dist/base/src/fault/fault-point.js')).href;

/**
 * A shell runs the child (an installer's parent dies with it: the shell stands in for the daemon).
 * `installer`: the child gets SONDE_INSTALLER_OF naming the shell.
 */
function passPoint(env: Record<string, string>, installer = false): { signal: NodeJS.Signals | null; stdout: string } {
  const code = `import(${JSON.stringify(MODULE)}).then((m) => { process.stdout.write(m.processRole()); m.faultPoint('stage:slot-written'); process.stdout.write(' passed'); });`;
  const script = `${installer ? 'SONDE_INSTALLER_OF=$$ ' : ''}"$NODE" -e "$CODE"; true`;
  const r = spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH ?? '', NODE: process.execPath, CODE: code, ...env }, encoding: 'utf8' });
  return { signal: r.signal, stdout: r.stdout };
}

describe('fault points armed for one process role', () => {
  it('a point armed for the installer does not stop the agent itself', () => {
    expect(passPoint({ SONDE_CRASH_AT: 'stage:slot-written', SONDE_CRASH_ROLE: 'installer' })).toEqual({ signal: null, stdout: 'agent passed' });
  });

  it('the installer (its parent named by SONDE_INSTALLER_OF) dies at a point armed for it', () => {
    expect(passPoint({ SONDE_CRASH_AT: 'stage:slot-written', SONDE_CRASH_ROLE: 'installer' }, true)).toEqual({ signal: 'SIGKILL', stdout: 'installer' });
  });

  it('a point armed for the agent stops the agent, not the installer; with no role, any process', () => {
    expect(passPoint({ SONDE_CRASH_AT: 'stage:slot-written', SONDE_CRASH_ROLE: 'agent' })).toEqual({ signal: null, stdout: 'agent' });
    expect(passPoint({ SONDE_CRASH_AT: 'stage:slot-written', SONDE_CRASH_ROLE: 'agent' }, true)).toEqual({ signal: null, stdout: 'installer passed' });
    expect(passPoint({ SONDE_CRASH_AT: 'stage:slot-written' }, true)).toEqual({ signal: 'SIGKILL', stdout: 'installer' });
  });
});
