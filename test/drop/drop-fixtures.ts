import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { PACK_MARKER } from '../../pack/src/format.js';
import { encodeHeader, paddingFor } from '../../pack/src/tar-header.js';
import type { DropEvent, DropInstall, DropInstallResult } from '../../agent/src/drop/index.js';
import { dropReceiptSchema, type DropReceipt } from '../../agent/src/drop/receipt.js';

/**
 * Fixtures of the drop tests: files shaped like packs (the outer tar of a .spk, with made-up
 * contents: the inbox reads headers only, the engine's verdict comes from the install function),
 * an install function that records what it was given, and child processes that hold files open.
 */
export function packShaped(payloadBytes = 20_000): Buffer {
  const parts: Buffer[] = [];
  const add = (name: string, body: Buffer): void => {
    parts.push(encodeHeader(name, body.length), body, Buffer.alloc(paddingFor(body.length)));
  };
  add('sonde-bundle', Buffer.from(PACK_MARKER));
  add('manifest.json', Buffer.from(JSON.stringify({ nonce: randomBytes(8).toString('hex') })));
  add('manifest.sig', Buffer.from('{}'));
  add('payloads/01-app', randomBytes(payloadBytes));
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface InstallCall {
  readonly path: string;
  readonly sha256: string;
}

/**
 * The install function the daemon would pass, recording each call (with the bytes it saw) and
 * the most calls ever in flight at once. `answer` decides the result per call.
 */
export function recordingInstall(answer: (call: InstallCall, n: number) => Partial<DropInstallResult> | Error = () => ({})): {
  install: DropInstall;
  calls: InstallCall[];
  maxInFlight: () => number;
} {
  const calls: InstallCall[] = [];
  let inFlight = 0;
  let max = 0;
  const install: DropInstall = async (path) => {
    inFlight++;
    max = Math.max(max, inFlight);
    try {
      const call = { path, sha256: sha256(await readFile(path)) };
      calls.push(call);
      await new Promise((r) => setTimeout(r, 20));
      const a = answer(call, calls.length);
      if (a instanceof Error) throw a;
      return { committed: true, outcome: 'committed', errorCode: null, errorMessage: null, deploymentId: `dep-${calls.length}`, version: '9.9.9', ...a };
    } finally {
      inFlight--;
    }
  };
  return { install, calls, maxInFlight: () => max };
}

export function eventLog(): { events: DropEvent[]; onEvent: (e: DropEvent) => void; types: () => string[] } {
  const events: DropEvent[] = [];
  return { events, onEvent: (e) => void events.push(e), types: () => events.map((e) => e.type) };
}

export async function receiptOf(dir: string, file: string): Promise<DropReceipt> {
  return dropReceiptSchema.parse(JSON.parse(await readFile(join(dir, `${file}.receipt.json`), 'utf8')));
}

export async function listing(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.')).sort();
}

/** Child processes that hold a file open; killed by pid in afterEach. */
const holders = new Set<ChildProcess>();

/** `sh -c 'exec sleep … >> file'`: a process holding the file open for writing (O_WRONLY|O_APPEND). */
export function holdForWriting(path: string): Promise<ChildProcess> {
  return hold(`exec sleep 60 >> "$1"`, path);
}

/** `sh -c 'exec sleep … < file'`: a process holding the file open read-only. */
export function holdForReading(path: string): Promise<ChildProcess> {
  return hold(`exec sleep 60 < "$1"`, path);
}

async function hold(script: string, path: string): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', script, 'sh', path], { stdio: 'ignore' });
  holders.add(child);
  child.once('exit', () => holders.delete(child));
  // The shell opens the file before it execs sleep: wait until a descriptor points at it.
  const target = await realpath(path);
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    for (const fd of await readdir(`/proc/${child.pid}/fd`).catch(() => [] as string[])) {
      if ((await readlink(`/proc/${child.pid}/fd/${fd}`).catch(() => '')) === target) return child;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the holder of ${path} did not open it`);
}

export async function release(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

export async function releaseAll(): Promise<void> {
  await Promise.all([...holders].map(release));
}
