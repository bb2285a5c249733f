import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { parseSecretJson } from '../../../base/src/fs/secret-json.js';
import { UpdateError } from './errors.js';

/**
 * Site variables (DESIGN.md, "Site variables"): secrets the customer's operator enters on the
 * probe, filled into `#{Name}` templates. Values live only in site-vars.json (mode 0600) and in
 * the config they are filled into. Nothing here returns or reports a value: callers get names.
 */
const NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const fileSchema = z.record(z.string().regex(NAME), z.string());
const REFERENCE = /#\{([A-Za-z][A-Za-z0-9_]{0,63})\}/g;

export function isVarName(name: string): boolean {
  return NAME.test(name);
}

export async function readSiteVars(path: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
  // No message may echo the file: it holds secrets. A syntax error names the line, not the text.
  let json: unknown;
  try {
    json = parseSecretJson(text, path);
  } catch (e) {
    throw new UpdateError('CONFIG_INVALID', (e as Error).message);
  }
  const r = fileSchema.safeParse(json);
  if (!r.success) throw new UpdateError('CONFIG_INVALID', `${path} is not an object of NAME: "value" strings`);
  return r.data;
}

export async function setSiteVar(path: string, name: string, value: string): Promise<void> {
  const vars = await readSiteVars(path);
  vars[name] = value;
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, `${JSON.stringify(vars, null, 2)}\n`, { mode: 0o600 });
}

export async function siteVarNames(path: string): Promise<string[]> {
  return Object.keys(await readSiteVars(path)).sort();
}

/** Names referenced anywhere in a JSON value. */
export function referencedVars(value: unknown): string[] {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') for (const m of v.matchAll(REFERENCE)) names.add(m[1]!);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(value);
  return [...names].sort();
}

/**
 * Fills every `#{Name}` in a JSON value. Throws SITE_VARS_MISSING naming the missing variables
 * (names only) before anything is filled.
 */
export function fillTemplate<T>(value: T, vars: Readonly<Record<string, string>>): T {
  // Own values only: `#{toString}` or `#{constructor}` must read as missing, not as Object's own.
  const missing = referencedVars(value).filter((n) => !Object.hasOwn(vars, n));
  if (missing.length > 0) {
    throw new UpdateError('SITE_VARS_MISSING', `site variables not set on this probe: ${missing.join(', ')} (set them with: sonde agent vars set NAME)`);
  }
  const fill = (v: unknown): unknown => {
    if (typeof v === 'string') return v.replace(REFERENCE, (_, n: string) => vars[n]!);
    if (Array.isArray(v)) return v.map(fill);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)]));
    return v;
  };
  return fill(value) as T;
}
