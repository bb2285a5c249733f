/**
 * Masks site variable values (DESIGN.md, "Site variables") in what leaves the probe in a
 * diagnostics bundle. In JSON, a string that contains a value becomes `[site variable NAME]`
 * whole; in free text (logs, receipts), every occurrence of a value is replaced. Values shorter
 * than MIN_TEXT_VALUE are masked in JSON strings they equal exactly, but not inside free text,
 * where "1" or "on" would blank out everything: docs/agent.md says so.
 */
const MIN_TEXT_VALUE = 4;

export class Masker {
  /** [value, name], longest value first (a value that contains another is masked whole). */
  private readonly values: [string, string][];

  constructor(vars: Readonly<Record<string, string>>) {
    this.values = Object.entries(vars)
      .filter(([, v]) => v.length > 0)
      .map(([n, v]): [string, string] => [v, n])
      .sort((a, b) => b[0].length - a[0].length);
  }

  /** The names masked (never a value). */
  get names(): string[] {
    return this.values.map(([, n]) => n).sort();
  }

  text(s: string): string {
    let out = s;
    for (const [v, n] of this.values) {
      if (v.length < MIN_TEXT_VALUE) continue;
      out = out.split(v).join(`[site variable ${n}]`);
      // The same value as JSON would write it (escaped quotes, backslashes, control characters).
      const escaped = JSON.stringify(v).slice(1, -1);
      if (escaped !== v) out = out.split(escaped).join(`[site variable ${n}]`);
    }
    return out;
  }

  /** A copy of a JSON value with every string that holds a value replaced. */
  json(value: unknown): unknown {
    if (typeof value === 'string') {
      const hit = this.values.find(([v]) => value === v || (v.length >= MIN_TEXT_VALUE && value.includes(v)));
      return hit ? `[site variable ${hit[1]}]` : value;
    }
    if (Array.isArray(value)) return value.map((x) => this.json(x));
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, this.json(x)]));
    return value;
  }
}
