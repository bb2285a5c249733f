/** Plain-text tables for the staff CLI; `--json` prints the API's JSON instead. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * The one `--json` envelope of every `sonde` command (docs/cli-guide.md, "JSON output"): one JSON
 * object on stdout. Success: `{"ok": true, ...result}`, a list under its own name
 * (`{"ok": true, "probes": [...]}`). Failure (run-command.ts): `{"ok": false, "code", "message",
 * ...detail}` and a non-zero exit. A result is an object, never a bare list.
 */
export type JsonResult<T> = T extends readonly unknown[] ? never : T extends object ? T : never;

export function jsonEnvelope<T>(result: JsonResult<T>, ok = true): string {
  if (Array.isArray(result) || result === null || typeof result !== 'object') throw new TypeError('a --json result is an object: put a list under a name');
  return JSON.stringify({ ok, ...(result as object) });
}

export function printJson<T>(result: JsonResult<T>): void {
  process.stdout.write(`${jsonEnvelope(result)}\n`);
}

/**
 * `500ms`, `30s`, `15m`, `2h`, `7d`. A bare number is refused: is `30` seconds or minutes? The
 * message says how to write it.
 */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) throw new Error(`${t} has no unit: write ${t}s, ${t}m, ${t}h or ${t}d (or ${t}ms)`);
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(t);
  if (!m) throw new Error(`not a duration: ${text} (e.g. 90s, 30m, 2h, 7d)`);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * factor;
}

/** A time for a table: `2026-12-06 10:28:30Z`, to the second, always with its zone (UTC). */
export function shortTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `512M`, `4G`, `100k` or plain bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+)([kKmMgG]i?[bB]?)?$/.exec(text.trim());
  if (!m) throw new Error(`not a size: ${text} (e.g. 512M, 4G)`);
  const unit = (m[2] ?? '').charAt(0).toLowerCase();
  return Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
}
