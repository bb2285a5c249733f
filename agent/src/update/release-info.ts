import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UpdateError } from './errors.js';

/** release.json at the top of an `app` payload (docs/probe-layout.md). */
const range = z.object({ min: z.number().int().nonnegative(), max: z.number().int().nonnegative() }).strict();
export const releaseInfoSchema = z
  .object({
    product: z.string(),
    version: z.string(),
    entry: z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/),
    db: range,
    config: range,
    health: z.object({ path: z.string().startsWith('/') }).strict().optional(),
    fault: z.string().optional(),
  })
  .strict();

export type ReleaseInfo = z.infer<typeof releaseInfoSchema>;

export async function readReleaseInfo(appDir: string): Promise<ReleaseInfo> {
  let text: string;
  try {
    text = await readFile(join(appDir, 'release.json'), 'utf8');
  } catch (e) {
    throw new UpdateError('RELEASE_INVALID', `the app payload has no release.json`, { cause: e });
  }
  const r = releaseInfoSchema.safeParse(JSON.parse(text));
  if (!r.success) {
    const i = r.error.issues[0];
    throw new UpdateError('RELEASE_INVALID', `release.json: ${i ? `${i.path.join('.')}: ${i.message}` : 'invalid'}`);
  }
  return r.data;
}
