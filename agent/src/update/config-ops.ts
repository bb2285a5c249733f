import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UpdateError } from './errors.js';
import { assertNever } from '../../../base/src/errors/sonde-error.js';

/**
 * Config migrations (docs/probe-layout.md): numbered files of declarative ops on config.json,
 * applied in order to a copy; each file NNNN raises configVersion to NNNN. Pure functions, apart
 * from loading the files.
 */
/**
 * Keys that would reach an object's prototype instead of the config: a path through `__proto__`
 * (or `constructor.prototype`) would change every object of the agent (prototype pollution).
 */
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
const path = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/)
  .refine((p) => !p.split('.').some((k) => FORBIDDEN_KEYS.has(k)), { message: 'a config path may not name __proto__, constructor or prototype' });
const opSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('set'), path, value: z.unknown() }).strict(),
  z.object({ op: z.literal('rename'), from: path, to: path }).strict(),
  z.object({ op: z.literal('remove'), path }).strict(),
  z.object({ op: z.literal('default'), path, value: z.unknown() }).strict(),
]);
export type ConfigOp = z.infer<typeof opSchema>;

export interface ConfigMigration {
  readonly version: number;
  readonly name: string;
  readonly ops: readonly ConfigOp[];
}

export type ConfigDoc = Record<string, unknown>;

const FILE = /^(\d{4})-([a-z0-9][a-z0-9._-]*)\.json$/;

export async function loadConfigMigrations(dir: string): Promise<ConfigMigration[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: ConfigMigration[] = [];
  for (const n of names) {
    const m = FILE.exec(n);
    if (!m) throw new UpdateError('CONFIG_INVALID', `config op file ${n} is not named NNNN-name.json`);
    const r = z.array(opSchema).safeParse(JSON.parse(await readFile(join(dir, n), 'utf8')));
    if (!r.success) throw new UpdateError('CONFIG_INVALID', `config op file ${n}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    out.push({ version: Number(m[1]), name: m[2]!, ops: r.data });
  }
  return out;
}

function refuseForbidden(key: string, where: string): void {
  if (FORBIDDEN_KEYS.has(key)) throw new UpdateError('CONFIG_INVALID', `${where} names ${key}, which would reach an object's prototype`);
}

function parent(doc: ConfigDoc, p: string, create: boolean): { obj: ConfigDoc; key: string } | null {
  const parts = p.split('.');
  for (const part of parts) refuseForbidden(part, `config path ${p}`);
  let obj: ConfigDoc = doc;
  for (const part of parts.slice(0, -1)) {
    const next = obj[part];
    if (next === undefined && create) obj[part] = {};
    else if (next === null || typeof next !== 'object' || Array.isArray(next)) {
      if (!create) return null;
      throw new UpdateError('CONFIG_INVALID', `config path ${p} runs through a value that is not an object`);
    }
    obj = obj[part] as ConfigDoc;
  }
  return { obj, key: parts[parts.length - 1]! };
}

/** Throws as `parent(doc, p, true)` would, without creating anything: a rename checks before it moves. */
function assertWritable(doc: ConfigDoc, p: string): void {
  for (const part of p.split('.')) refuseForbidden(part, `config path ${p}`);
  let obj: unknown = doc;
  for (const part of p.split('.').slice(0, -1)) {
    obj = (obj as ConfigDoc)[part];
    if (obj === undefined) return;
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      throw new UpdateError('CONFIG_INVALID', `config path ${p} runs through a value that is not an object`);
    }
  }
}

export function getPath(doc: ConfigDoc, p: string): unknown {
  const at = parent(doc, p, false);
  return at ? at.obj[at.key] : undefined;
}

export function applyOp(doc: ConfigDoc, op: ConfigOp): void {
  switch (op.op) {
    case 'set': {
      const at = parent(doc, op.path, true)!;
      at.obj[at.key] = structuredClone(op.value);
      return;
    }
    case 'default': {
      const at = parent(doc, op.path, true)!;
      if (at.obj[at.key] === undefined) at.obj[at.key] = structuredClone(op.value);
      return;
    }
    case 'remove': {
      const at = parent(doc, op.path, false);
      if (at) delete at.obj[at.key];
      return;
    }
    case 'rename': {
      const from = parent(doc, op.from, false);
      if (!from || from.obj[from.key] === undefined) return;
      assertWritable(doc, op.to);
      const value = from.obj[from.key];
      delete from.obj[from.key];
      const to = parent(doc, op.to, true)!;
      to.obj[to.key] = value;
      return;
    }
    default:
      return assertNever(op, 'config op');
  }
}

/** The migrations above `fromVersion`, applied in order to a copy of `doc`. Pure. */
export function migrateConfig(doc: ConfigDoc, migrations: readonly ConfigMigration[], fromVersion: number): { doc: ConfigDoc; version: number } {
  const out = structuredClone(doc);
  let version = fromVersion;
  for (const m of migrations.filter((x) => x.version > fromVersion).sort((a, b) => a.version - b.version)) {
    for (const op of m.ops) applyOp(out, op);
    version = m.version;
    out.configVersion = version;
  }
  return { doc: out, version };
}

/** A product's initial template, under any values the probe already has (pre-seeded values win). */
export function applyTemplate(existing: ConfigDoc, template: ConfigDoc): ConfigDoc {
  const merge = (base: ConfigDoc, add: ConfigDoc): ConfigDoc => {
    const out: ConfigDoc = structuredClone(base);
    for (const [k, v] of Object.entries(add)) {
      refuseForbidden(k, 'the release template');
      const cur = out[k];
      if (cur === undefined) out[k] = structuredClone(v);
      else if (cur && v && typeof cur === 'object' && typeof v === 'object' && !Array.isArray(cur) && !Array.isArray(v)) {
        out[k] = merge(cur as ConfigDoc, v as ConfigDoc);
      }
    }
    return out;
  };
  return merge(existing, template);
}

export function configVersionOf(doc: ConfigDoc): number {
  const v = doc.configVersion;
  return typeof v === 'number' && Number.isInteger(v) ? v : 0;
}
