import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's files, built by `npm run build` into `dist/server/web/` (tsc compiles
 * server/web/*.ts; scripts/post-build.mjs copies server/web/static/). They are read once, at
 * start, into memory (about 90 KB), each with a strong ETag: nothing is read from disk per
 * request, and no request can name a file outside this set.
 */
export interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** dist/server/web beside the compiled server, or (tests run the sources) the build's. */
export function assetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = join(here, '..', '..', 'web');
  if (existsSync(join(compiled, 'main.js'))) return compiled;
  return join(here, '..', '..', '..', 'dist', 'server', 'web');
}

export function loadAssets(dir = assetsDir()): Map<string, Asset> {
  const out = new Map<string, Asset>();
  if (!existsSync(dir)) return out;
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) {
        walk(full);
        continue;
      }
      const ext = name.slice(name.lastIndexOf('.'));
      const type = TYPES[ext];
      if (!type) continue;
      const body = readFileSync(full);
      out.set(relative(dir, full).split(sep).join('/'), { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
    }
  };
  walk(dir);
  return out;
}
