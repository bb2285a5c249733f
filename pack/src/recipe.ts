import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import semver from 'semver';
import { PACK_KINDS, PAYLOAD_TYPES, type PackKind, type PayloadType } from './manifest.js';
import { PackerError } from './packer-errors.js';

/**
 * The pack recipe (`pack.json` in the source directory; docs/pack-format.md). It names payload
 * folders by type and carries the manifest fields; command-line flags override it. A source
 * directory without pack.json is packed whole as one `app` payload.
 */
const recipeSchema = z
  .object({
    kind: z.enum(PACK_KINDS).optional(),
    product: z.string().optional(),
    version: z.string().optional(),
    compatible: z.array(z.string()).optional(),
    requires: z.string().optional(),
    minAgentVersion: z.string().optional(),
    securityVersion: z.number().int().nonnegative().optional(),
    releaseNotes: z.string().optional(),
    releaseNotesFile: z.string().optional(),
    allowDowngrade: z.boolean().optional(),
    downgradeFrom: z.string().optional(),
    compression: z.enum(['gzip', 'none', 'auto']).optional(),
    payloads: z.partialRecord(z.enum(PAYLOAD_TYPES), z.string()).optional(),
  })
  .strict();

export type Recipe = z.infer<typeof recipeSchema>;

/** Everything the packer needs, after the recipe and the flags have been merged and checked. */
export interface PackPlan {
  kind: PackKind;
  product: string;
  version: string;
  compatible: string[];
  requires?: string;
  minAgentVersion?: string;
  securityVersion: number;
  releaseNotes?: string;
  allowDowngrade?: boolean;
  /** The one installed version the downgrade allowance lets this pack replace. */
  downgradeFrom?: string;
  compression: 'gzip' | 'none' | 'auto';
  payloads: { type: PayloadType; dir: string }[];
}

export type PlanOverrides = Partial<Omit<PackPlan, 'payloads'>>;

export async function loadRecipe(src: string): Promise<{ recipe: Recipe | null; root: string }> {
  const root = resolve(src);
  const info = await stat(root).catch(() => null);
  if (!info?.isDirectory()) throw new PackerError('SOURCE_INVALID', `${src} is not a directory`);
  let text: string;
  try {
    text = await readFile(join(root, 'pack.json'), 'utf8');
  } catch {
    return { recipe: null, root };
  }
  try {
    return { recipe: recipeSchema.parse(JSON.parse(text)), root };
  } catch (e) {
    const issue = e instanceof z.ZodError ? e.issues[0] : undefined;
    throw new PackerError('RECIPE_INVALID', `pack.json: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'not valid JSON'}`, { cause: e });
  }
}

export async function makePlan(src: string, flags: PlanOverrides): Promise<PackPlan> {
  const { recipe, root } = await loadRecipe(src);
  const r = recipe ?? {};
  let releaseNotes = flags.releaseNotes ?? r.releaseNotes;
  if (releaseNotes === undefined && r.releaseNotesFile) {
    releaseNotes = await readFile(join(root, r.releaseNotesFile), 'utf8').catch((e: unknown) => {
      throw new PackerError('RECIPE_INVALID', `pack.json: releaseNotesFile ${r.releaseNotesFile} cannot be read`, { cause: e });
    });
  }
  const payloads = r.payloads
    ? Object.entries(r.payloads).map(([type, dir]) => ({ type: type as PayloadType, dir: resolve(root, dir) }))
    : [{ type: 'app' as const, dir: root }];
  for (const p of payloads) {
    const info = await stat(p.dir).catch(() => null);
    // A system payload names its file-system image file; every other type a folder.
    if (p.type === 'system') {
      if (!info?.isFile()) throw new PackerError('SOURCE_INVALID', `system image ${p.dir} is not a file`);
    } else if (!info?.isDirectory()) throw new PackerError('SOURCE_INVALID', `payload folder ${p.dir} (${p.type}) is not a directory`);
  }
  const plan: PackPlan = {
    kind: flags.kind ?? r.kind ?? 'product',
    product: flags.product ?? r.product ?? '',
    version: flags.version ?? r.version ?? '',
    compatible: flags.compatible ?? r.compatible ?? [],
    securityVersion: flags.securityVersion ?? r.securityVersion ?? 0,
    compression: flags.compression ?? r.compression ?? 'auto',
    payloads,
  };
  const requires = flags.requires ?? r.requires;
  if (requires !== undefined) plan.requires = requires;
  const minAgentVersion = flags.minAgentVersion ?? r.minAgentVersion;
  if (minAgentVersion !== undefined) plan.minAgentVersion = minAgentVersion;
  if (releaseNotes !== undefined) plan.releaseNotes = releaseNotes;
  const downgradeFrom = flags.downgradeFrom ?? r.downgradeFrom;
  const allowDowngrade = flags.allowDowngrade ?? r.allowDowngrade ?? (downgradeFrom !== undefined ? true : undefined);
  if (allowDowngrade !== undefined) plan.allowDowngrade = allowDowngrade;
  if (downgradeFrom !== undefined) {
    if (!semver.valid(downgradeFrom)) throw new PackerError('RECIPE_INVALID', `downgrade-from ${JSON.stringify(downgradeFrom)} is not a semantic version`);
    if (allowDowngrade !== true) throw new PackerError('RECIPE_INVALID', 'downgradeFrom needs the downgrade allowance');
    plan.downgradeFrom = downgradeFrom;
  }
  if (!plan.product) throw new PackerError('RECIPE_INVALID', 'no product name: give --product or "product" in pack.json');
  if (!semver.valid(plan.version)) throw new PackerError('RECIPE_INVALID', `version ${JSON.stringify(plan.version)} is not a semantic version`);
  if (plan.compatible.length === 0) throw new PackerError('RECIPE_INVALID', 'no compatible model: give --model or "compatible" in pack.json');
  return plan;
}
