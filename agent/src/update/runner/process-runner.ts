import { spawn } from 'node:child_process';
import { closeSync, constants, fstatSync, mkdirSync, openSync } from 'node:fs';
import { access, open, readdir, readFile, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import { processAlive } from '../../../../base/src/os/process-alive.js';
import type { Layout } from '../layout.js';
import { runnerOf } from '../release-info.js';
import { UpdateError } from '../errors.js';
import { appEnvironment, expand, placeholders, type StartContext } from './runner.js';

/**
 * The `process` and `exec` runners: the app as a detached child, in its own process group, with
 * its output appended to `<root>/run/app.log` and its pid in `<root>/run/app.pid`. `process` runs
 * `node <slot>/app/<entry>`; `exec` runs the release's command (an executable inside the app
 * folder, or an absolute path) with its arguments and environment. The app outlives the agent (an
 * agent crash must not take the probe's service down), so the pid file is how the next agent
 * finds it, and PROBE_ROOT in its environment is how a stop finds the processes no pid file names.
 */
async function isOurApp(pid: number, root: string): Promise<boolean> {
  if (!processAlive(pid)) return false;
  try {
    // A recycled pid belongs to someone else: check the environment the app was started with.
    const env = await readFile(`/proc/${pid}/environ`, 'utf8');
    return env.split('\0').includes(`PROBE_ROOT=${root}`);
  } catch {
    return false;
  }
}

/** The argv and environment a release runs with under `process` or `exec`. */
export async function commandOf(c: StartContext): Promise<{ argv: string[]; env: Record<string, string>; cwd: string }> {
  const appDir = join(c.slotDir, 'app');
  const spec = runnerOf(c.release);
  const env = appEnvironment(c);
  if (spec.type === 'process') {
    return { argv: [process.execPath, join(appDir, c.release.entry ?? '')], env, cwd: appDir };
  }
  if (spec.type !== 'exec') throw new UpdateError('APP_START_FAILED', `the ${spec.type} runner is not a process`);
  const vars = placeholders(c);
  const argv = spec.command.map((a) => expand(a, vars));
  const exe = isAbsolute(argv[0]!) ? argv[0]! : join(appDir, argv[0]!);
  try {
    await access(exe, constants.X_OK);
  } catch {
    throw new UpdateError('APP_START_FAILED', `the release's command ${spec.command[0]} is not an executable file (${exe})`);
  }
  const own = Object.fromEntries(Object.entries(spec.env ?? {}).map(([k, v]) => [k, expand(v, vars)]));
  // The probe's own variables win: PROBE_ROOT is how the agent recognises the app's processes.
  return { argv: [exe, ...argv.slice(1)], env: { ...own, ...env }, cwd: appDir };
}

export class ProcessRunner {
  private readonly pidFile: string;
  private readonly logFile: string;
  /** Where app.log ended when this runner last started the app (0: read the tail). */
  private logStart = 0;

  constructor(private readonly layout: Layout) {
    this.pidFile = join(layout.run, 'app.pid');
    this.logFile = join(layout.run, 'app.log');
  }

  async running(): Promise<number | null> {
    let pid: number;
    try {
      pid = Number((await readFile(this.pidFile, 'utf8')).trim());
    } catch {
      return null;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1) return null;
    return (await isOurApp(pid, this.layout.root)) ? pid : null;
  }

  async start(c: StartContext): Promise<void> {
    const { argv, env, cwd } = await commandOf(c);
    mkdirSync(this.layout.run, { recursive: true });
    const log = openSync(this.logFile, 'a');
    this.logStart = fstatSync(log).size;
    try {
      const child = spawn(argv[0]!, argv.slice(1), { cwd, detached: true, stdio: ['ignore', log, log], env });
      // A spawn that fails (ENOENT, EACCES) reports it as an event, and leaves no pid.
      child.on('error', () => undefined);
      const pid = child.pid;
      if (pid === undefined) throw new UpdateError('APP_START_FAILED', `could not start ${argv[0]}`);
      child.unref();
      await writeFileAtomic(this.pidFile, `${pid}\n`);
    } finally {
      closeSync(log);
    }
  }

  async lastWords(maxBytes = 2048): Promise<string | null> {
    let fh;
    try {
      fh = await open(this.logFile, 'r');
    } catch {
      return null;
    }
    try {
      const size = (await fh.stat()).size;
      const from = Math.max(this.logStart <= size ? this.logStart : 0, size - maxBytes);
      const buf = Buffer.alloc(size - from);
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      let text = buf.subarray(0, bytesRead).toString('utf8');
      // Cut to whole lines when the window started inside one.
      if (from > this.logStart && from > 0) text = text.slice(text.indexOf('\n') + 1);
      text = text.trim();
      return text.length > 0 ? text : null;
    } finally {
      await fh.close();
    }
  }

  /** SIGTERM, `graceMs` to stop cleanly, then SIGKILL. */
  async stop(graceMs = 5000): Promise<void> {
    const named = await this.running();
    // An agent killed between spawning the app and writing app.pid leaves an app that no pid file
    // names, holding the port and the database: it is found by the PROBE_ROOT it was started with.
    const pids = new Set([...(named !== null ? [named] : []), ...(await appsOf(this.layout.root))]);
    await Promise.all([...pids].map((pid) => terminate(pid, graceMs)));
    await rm(this.pidFile, { force: true });
  }
}

/** Every live process started with PROBE_ROOT=<root> (Linux /proc; none found elsewhere). */
async function appsOf(root: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const want = `PROBE_ROOT=${root}`;
  const pids: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
    if (env.split('\0').includes(want)) pids.push(Number(name));
  }
  return pids;
}

async function terminate(pid: number, graceMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone already
  }
  const deadline = Date.now() + graceMs;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    while (processAlive(pid)) await new Promise((r) => setTimeout(r, 10));
  }
}
