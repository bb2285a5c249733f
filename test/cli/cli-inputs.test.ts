/** Durations and short pack ids on the command line (issue 23). */
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../base/src/cli/output.js';
import { sonde } from '../helpers/probe-state.js';

/** Durations on the command line take units (issue 23): a bare number is refused with a hint. */
describe('durations', () => {
  it('read 500ms, 30s, 5m, 2h and 7d', () => {
    expect([parseDuration('500ms'), parseDuration('30s'), parseDuration('5m'), parseDuration('2h'), parseDuration(' 7d ')]).toEqual([500, 30_000, 300_000, 7_200_000, 604_800_000]);
  });

  it('refuse a bare number, saying how to write it, and anything else', () => {
    expect(() => parseDuration('30')).toThrow('30 has no unit: write 30s, 30m, 30h or 30d (or 30ms)');
    for (const bad of ['', 's', '1.5h', '-1s', '10 s', '3w']) expect(() => parseDuration(bad), bad).toThrow(/not a duration/);
  });

  it('reach the user as one line with its code, exit 2, from the built CLI', async () => {
    const r = await sonde(['server', 'gc', '--data', '/nonexistent-sonde-dir', '--older-than', '3600']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('USAGE');
    expect(r.stderr).toContain('3600 has no unit: write 3600s');
  });
});

describe('short pack ids', () => {
  it('resolve a unique prefix, and refuse an ambiguous one listing the candidates', async () => {
    const { resolvePackRef } = await import('../../server/src/cli/pack-ref.js');
    const known = async (): Promise<string[]> => [`abcdef12${'0'.repeat(56)}`, `abcdef34${'0'.repeat(56)}`, `99${'1'.repeat(62)}`];
    expect(await resolvePackRef('abcdef12', known)).toBe(`abcdef12${'0'.repeat(56)}`);
    expect(await resolvePackRef('ABCDEF34', known)).toBe(`abcdef34${'0'.repeat(56)}`);
    await expect(resolvePackRef('abcdef', known)).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('names 2 packs') });
    const full = `12${'3'.repeat(62)}`;
    expect(await resolvePackRef(full, async () => [])).toBe(full);
  });
});
