import { describe, expect, it } from 'vitest';
import { RecentLog } from '../../agent/src/daemon/recent-log.js';
import { Masker } from '../../agent/src/diagnostics/masker.js';

/** The two pieces a diagnostics bundle is made safe and small with. */
describe('the masker', () => {
  const m = new Masker({ Password: 'hunter2-long', Pin: '42', Quote: 'a"b\\c-value' });

  it('replaces a value wherever it appears in free text, plain or JSON-escaped, and names only the variable', () => {
    const text = 'login with hunter2-long now; json {"q":"a\\"b\\\\c-value"} and a"b\\c-value';
    const out = m.text(text);
    expect(out).not.toContain('hunter2-long');
    expect(out).not.toContain('a\\"b\\\\c-value');
    expect(out).not.toContain('a"b\\c-value');
    expect(out).toContain('[site variable Password]');
    expect(out).toContain('[site variable Quote]');
  });

  it('masks a short value only where it is a whole JSON string, never inside free text', () => {
    expect(m.json({ pin: '42', port: 4242, note: 'room 42' })).toEqual({ pin: '[site variable Pin]', port: 4242, note: 'room 42' });
    expect(m.text('room 42')).toBe('room 42');
  });

  it('masks a JSON string that contains a value, at any depth, and leaves other values alone', () => {
    expect(m.json({ a: [{ url: 'https://u:hunter2-long@host' }], n: null, b: true })).toEqual({ a: [{ url: '[site variable Password]' }], n: null, b: true });
    expect(m.names).toEqual(['Password', 'Pin', 'Quote']);
  });

  it('masks the longer of two values that overlap first, so no part of it is left', () => {
    const overlap = new Masker({ Short: 'secret', Long: 'secret-and-more' });
    expect(overlap.text('x secret-and-more y')).toBe('x [site variable Long] y');
  });
});

describe('the recent log', () => {
  it('keeps the newest lines within its size, dropping the oldest whole', () => {
    const log = new RecentLog(100);
    for (let i = 0; i < 20; i++) log.write(`{"n":${i},"msg":"line ${i}"}\n`);
    const text = log.text();
    expect(text.length).toBeLessThanOrEqual(100);
    expect(text.endsWith('{"n":19,"msg":"line 19"}\n')).toBe(true);
    expect(text).not.toContain('"n":0,');
    for (const line of text.trim().split('\n')) expect(() => JSON.parse(line) as unknown).not.toThrow();
  });

  it('hands out fewer bytes when asked, newest first', () => {
    const log = new RecentLog(10_000);
    for (let i = 0; i < 10; i++) log.write(`line-${i}\n`);
    expect(log.text(14)).toBe('line-8\nline-9\n');
    expect(log.text(0)).toBe('');
  });
});
