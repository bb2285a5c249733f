import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';

/**
 * Runs a command under GNU time and returns its wall time and peak RSS. Benchmarks print what
 * these return next to their targets; nothing here asserts.
 */
export interface Run {
  seconds: number;
  maxRssKiB: number;
  stdout: string;
}

export async function timed(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '__RSS__ %M', cmd, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
        return;
      }
      const rss = /__RSS__ (\d+)/.exec(stderr);
      resolve({ seconds, maxRssKiB: rss ? Number(rss[1]) : NaN, stdout });
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

/**
 * Deleting a 256 MiB tree makes ext4 (mounted with online discard here) slow down the next file
 * creations for a while; measured: 2,000 creates take 0.9 s right after an rm -rf and 0.03 s in a
 * settled file system. Every timed step starts from a settled disk, so no step pays for the
 * previous one's cleanup.
 */
export async function settle(...paths: string[]): Promise<void> {
  for (const p of paths) await rm(p, { recursive: true, force: true });
  await timed('sync', []);
  await new Promise((r) => setTimeout(r, 5000));
}

