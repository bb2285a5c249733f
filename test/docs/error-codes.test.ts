import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, allErrorCodes } from '../../cli/src/error-registry.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
/** Codes are the first cell of a table row, in backticks: | `CODE` | ... */
const documented = [...doc.matchAll(/^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]!);

describe('docs/errors.md', () => {
  it('documents every error code the code can emit', () => {
    const missing = allErrorCodes().filter((c) => !documented.includes(c));
    expect(missing).toEqual([]);
  });

  it('lists no code that the code no longer emits', () => {
    const known = new Set(allErrorCodes());
    expect(documented.filter((c) => !known.has(c))).toEqual([]);
  });

  it('documents each code once', () => {
    expect(documented.length).toBe(new Set(documented).size);
  });

  it('keeps codes unique across domains', () => {
    const all = allErrorCodes();
    expect(all.length).toBe(new Set(all).size);
    expect(Object.keys(ERROR_CODES).length).toBeGreaterThan(0);
  });
});
