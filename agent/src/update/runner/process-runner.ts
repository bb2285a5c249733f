import { spawn } from 'node:child_process';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
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
/**
 * The environment process `pid` was started with, as its `NAME=value` entries; null when it cannot
 * be read (gone, or not ours to read). A process in the middle of an execve (a shell script's
 * `exec busybox httpd`, a wrapper exec-ing the real service) shows an empty environment for that
 * instant: the kernel has given it its new memory but not yet copied the variables in (measured
 * here: about 2 % of reads of a process exec-ing in a loop). A live process reading empty is read
 * again for up to `retryMs`, so the app is not taken for a stranger, or for dead, while it execs.
 */
async function environOf(pid: number, retryMs: number): Promise<string[] | null> {
  const deadline = Date.now() + retryMs;
  for (;;) {
    let env: string;
    try {
      env = await readFile(`/proc/${pid}/environ`, 'utf8');
    } catch {
      return null;
    }
    if (env.length > 0 || Date.now() >= deadline || !processAlive(pid)) return env.split('\0').filter((e) => e.length > 0);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** How long a live process may read as having no environment before it is taken at its word. */
const EXEC_RETRY_MS = 200;

async function isOurApp(pid: number, root: string): Promise<boolean> {
  if (!processAlive(pid)) return false;
  // A recycled pid belongs to someone else: check the environment the app was started with.
  return (await environOf(pid, EXEC_RETRY_MS))?.includes(`PROBE_ROOT=${root}`) ?? false;
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

/**
 * Every live process started with PROBE_ROOT=<root> (Linux /proc; none found elsewhere). The
 * processes that read with an empty environment, kernel threads aside, are read again with the
 * exec retry, all at once: one caught inside an execve shows its variables a moment later.
 */
async function appsOf(root: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const want = `PROBE_ROOT=${root}`;
  const pids: number[] = [];
  const blank: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => null);
    if (env === '') blank.push(Number(name));
    else if (env !== null && env.split('\0').includes(want)) pids.push(Number(name));
  }
  const again = await Promise.all(blank.filter((pid) => !isKernelThread(pid)).map(async (pid) => ((await environOf(pid, EXEC_RETRY_MS))?.includes(want) ? pid : null)));
  return [...pids, ...again.filter((pid): pid is number => pid !== null)];
}

/** A kernel thread (kthreadd, pid 2, or one of its children): never an app, always an empty environment. */
function isKernelThread(pid: number): boolean {
  if (pid === 2) return true;
  try {
    // stat: "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === '2';
  } catch {
    return true; // gone: nothing to wait for
  }
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
