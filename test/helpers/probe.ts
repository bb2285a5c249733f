import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { buildSamples, type SamplePaths } from '../../images/src/samples/index.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import { Engine } from '../../agent/src/update/engine.js';
import type { EngineOptions } from '../../agent/src/update/context.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { readStatus } from '../../agent/src/update/status.js';

/** Probes under test: sample packs, engines with fast health checks, and what "whole" means. */
export const FAST_HEALTH = { required: 2, intervalMs: 100, windowMs: 8000, requestTimeoutMs: 1000 } as const;

let samples: Promise<SamplePaths> | null = null;
let samplesDir: string | null = null;

/** The sample packs, built once per test file. */
export function sharedSamples(dir: string): Promise<SamplePaths> {
  if (!samples || samplesDir !== dir) {
    samplesDir = dir;
    samples = buildSamples(dir);
  }
  return samples;
}

export async function openEngine(root: string, s: SamplePaths, extra: Partial<EngineOptions> = {}): Promise<Engine> {
  return Engine.open({
    root,
    keyring: join(s.out, 'keys', 'root.crt'),
    recipientKey: await loadPrivateKey(join(s.out, 'keys', 'fleet.key')),
    health: FAST_HEALTH,
    ...extra,
  });
}

/** Schema version plus every row of every table, hashed: equal means the same database content. */
export function dbDigest(path: string): { version: number; tables: Record<string, string> } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables: Record<string, string> = {};
    const objects = db.prepare(`SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`).all() as { type: string; name: string; sql: string | null }[];
    tables['(schema)'] = createHash('sha256').update(JSON.stringify(objects)).digest('hex');
    for (const t of objects.filter((o) => o.type === 'table')) {
      const rows = db.prepare(`SELECT * FROM "${t.name}" ORDER BY rowid`).raw().all();
      tables[t.name] = createHash('sha256').update(JSON.stringify(rows)).digest('hex');
    }
    return { version, tables };
  } finally {
    db.close();
  }
}

export function httpJson(port: number, path: string, method = 'GET'): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, timeout: 2000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Everything that must be identical before and after a refused or rolled-back install. */
export async function wholeProbe(root: string): Promise<Record<string, unknown>> {
  const layout = layoutOf(root);
  const engine = await Engine.open({ root });
  try {
    const s = await readStatus(engine.context);
    return {
      slot: s.slot,
      version: s.version,
      appVersion: s.appVersion,
      dbVersion: s.dbVersion,
      configVersion: s.configVersion,
      db: dbDigest(layout.db),
      config: await readFile(layout.config, 'utf8'),
      unfinished: s.unfinished,
    };
  } finally {
    engine.close();
  }
}

export async function stopApp(root: string): Promise<void> {
  const engine = await Engine.open({ root });
  try {
    await engine.context.runner.stop();
  } finally {
    engine.close();
  }
}
