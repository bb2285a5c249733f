import { spawn } from 'node:child_process';
import { openSync, closeSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalLine, prettyLine } from '../../base/src/log/log-stream.js';
import { scratch } from '../helpers/packs.js';
import { CLI } from '../helpers/probe-state.js';
import { freePort } from '../server/mosquitto-harness.js';

/**
 * Logs as their readers need them (issue 23): readable on a terminal, and under systemd each line
 * carries the syslog priority journald files it under (`journalctl -p warning` works).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await scratch('sonde-log-streams-');
});
afterAll(() => tmp.cleanup());

describe('log lines', () => {
  it('carry the syslog priority of their pino level for journald', () => {
    const line = (level: number): string => JSON.stringify({ level, time: 0, msg: 'm' });
    expect([10, 20, 30, 40, 50, 60].map((l) => journalLine(line(l)).slice(0, 3))).toEqual(['<7>', '<7>', '<6>', '<4>', '<3>', '<2>']);
    expect(journalLine(line(40))).toBe(`<4>${line(40)}`);
  });

  it('read as one line a person can scan on a terminal, secrets redacted before they get here', () => {
    const l = JSON.stringify({ level: 40, time: Date.parse('2026-12-06T10:28:30.123Z'), pid: 1, hostname: 'h', app: 'sonde-server', msg: 'install failed', code: 'HEALTH_CHECK_FAILED', probe: { id: 'p1' } });
    expect(prettyLine(l)).toBe('10:28:30.123 WARN  install failed  code=HEALTH_CHECK_FAILED probe={"id":"p1"}');
    expect(prettyLine('not json')).toBe('not json');
  });
});

async function serverLog(journal: boolean): Promise<string> {
  const data = join(tmp.dir, `data-${journal ? 'journal' : 'plain'}`);
  const file = join(tmp.dir, `stderr-${journal ? 'journal' : 'plain'}.log`);
  const fd = openSync(file, 'w');
  const st = statSync(file);
  const env = { ...process.env };
  delete env['JOURNAL_STREAM'];
  if (journal) env['JOURNAL_STREAM'] = `${st.dev}:${st.ino}`;
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'server', '--data', data, '--port', String(port), '--mqtt-port', String(await freePort())], { stdio: ['ignore', 'ignore', fd], env });
  closeSync(fd);
  try {
    const until = Date.now() + 30_000;
    for (;;) {
      const text = await readFile(file, 'utf8');
      if (text.includes('server started')) return text;
      if (Date.now() > until || child.exitCode !== null) throw new Error(`no start line: ${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

describe('the server under systemd', () => {
  it('prefixes each JSON line with its priority when stderr is the journal, and writes plain JSON otherwise', async () => {
    const journal = (await serverLog(true)).split('\n').filter(Boolean);
    expect(journal.length).toBeGreaterThan(0);
    for (const l of journal) expect(l).toMatch(/^<[2-7]>\{"level":\d+,/);
    expect(journal.find((l) => l.includes('server started'))).toMatch(/^<6>/);
    const plain = (await serverLog(false)).split('\n').filter(Boolean);
    for (const l of plain) expect(l).toMatch(/^\{"level":\d+,/);
  });
});
