import { readFileSync } from 'node:fs';

/**
 * Whether process `pid` is still running. A process whose parent died is re-parented to PID 1;
 * once it exits it stays a zombie until PID 1 reaps it, which a container's init (or this
 * machine's) may do late or never. A zombie has exited: it holds no lock and serves no one, so it
 * counts as gone, although `kill(pid, 0)` still succeeds on it.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (e) {
    // No /proc (not Linux): the signal check above is all there is. ENOENT: it just vanished.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * Whether process `pid` is still in the process table, a zombie included (`kill(pid, 0)`): what
 * a caller waits on when "stopped" must mean "gone", with no entry left in /proc, rather than
 * "no longer running". EPERM: it exists but belongs to someone else.
 */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
