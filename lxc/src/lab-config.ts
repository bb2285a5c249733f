import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { readPack } from '../../pack/src/index.js';
import type { ProbeInit } from '../../images/src/lab/probe-image.js';
import { LabError } from './errors.js';
import { LAB_LINES, type LabLine } from './lab-state.js';
import type { Samples } from './golden.js';
import { CHANNELS, type Channel } from '../../server/src/store/types.js';

/**
 * What a lab's probes run (docs/lab.md, "The vendor's own releases"). A **line** is an ordered
 * list of packs, installed one after the other into a probe's layer exactly as a probe in the
 * field was installed, with the keys to verify and decrypt them and the site variables they
 * need. The built-in lines are the sample app's (old-stable, stable, beta); a lab file
 * (`lab.json`) names the vendor's own lines and **profiles**: named probe configurations (a line,
 * PID 1, site variables, a count), as the seed vendor keeps one per branch, partner or training.
 */
export interface LineSpec {
  readonly name: string;
  /** The release the line ends on: what the fleet server must report. */
  readonly version: string;
  /** Host paths, in install order. */
  readonly packs: readonly string[];
  /** The vendor root the first install seeds the keyring with (a certificate file on the host). */
  readonly keyring: string;
  /** A recipient key for encrypted packs, or null. */
  readonly recipientKey: string | null;
  readonly siteVars: Readonly<Record<string, string>>;
  readonly model: string | null;
  /** The fleet server channel the line's probes join (rollouts target channels); null: none set. */
  readonly channel: Channel | null;
  /** Part of the layer cache key: changes whenever what the layer holds would. */
  readonly fingerprint: string;
}

const LINE_NAME = /^[a-z][a-z0-9-]{0,23}$/;
const VAR_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

const labFileSchema = z
  .object({
    format: z.literal('sonde-lab-config-1'),
    /** Relative to the lab file's folder. */
    keys: z.object({ keyring: z.string().min(1), recipientKey: z.string().min(1).optional() }).strict(),
    lines: z
      .record(
        z.string().regex(LINE_NAME, 'a line name is 1 to 24 lower-case letters, digits and -'),
        z.object({ packs: z.array(z.string().min(1)).min(1).max(32), model: z.string().min(1).max(64).optional(), channel: z.enum(CHANNELS).optional() }).strict(),
      )
      .refine((l) => Object.keys(l).length > 0, 'name at least one line'),
    profiles: z
      .record(
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a profile name is 1 to 64 letters, digits, ., _ and -'),
        z
          .object({
            line: z.string(),
            init: z.enum(['busybox', 'systemd']).default('busybox'),
            count: z.number().int().min(1).max(240).default(1),
            siteVars: z.record(z.string().regex(VAR_NAME, 'a site variable name'), z.string().min(1).max(4096)).default({}),
          })
          .strict(),
      )
      .refine((p) => Object.keys(p).length > 0, 'name at least one profile'),
  })
  .strict()
  .superRefine((f, ctx) => {
    for (const [name, p] of Object.entries(f.profiles)) {
      if (!Object.hasOwn(f.lines, p.line) && !Object.hasOwn(LAB_LINES, p.line)) {
        ctx.addIssue({ code: 'custom', path: ['profiles', name, 'line'], message: `no line ${p.line} (lines: ${[...Object.keys(f.lines), ...Object.keys(LAB_LINES)].join(', ')})` });
      }
    }
    for (const name of Object.keys(f.lines)) {
      if (Object.hasOwn(LAB_LINES, name)) ctx.addIssue({ code: 'custom', path: ['lines', name], message: `${name} is a built-in line` });
    }
  });

export type LabFile = z.infer<typeof labFileSchema>;

export interface Profile {
  readonly name: string;
  readonly line: LineSpec | LabLine;
  readonly init: ProbeInit;
  readonly count: number;
}

async function fileFingerprint(path: string, what: string): Promise<string> {
  try {
    const st = await stat(path);
    return `${path}\0${st.size}\0${st.mtimeMs}`;
  } catch (e) {
    throw new LabError('LAB_CONFIG_INVALID', `${what} ${path} cannot be read`, { cause: e });
  }
}

/** The version a pack installs (its manifest, read but not trusted: the builder's install verifies it). */
async function packVersion(path: string): Promise<string> {
  let pack;
  try {
    pack = await readPack(path);
  } catch (e) {
    throw new LabError('LAB_CONFIG_INVALID', `${path} is not a readable pack (${(e as { code?: string }).code ?? (e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(pack.manifestBytes.toString('utf8')).version as string;
  } finally {
    await pack.close();
  }
}

/** Reads and checks a lab file, and resolves `profile` to what `lab up` needs. */
export async function loadProfile(file: string, profile: string): Promise<Profile> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new LabError('LAB_CONFIG_INVALID', `lab file ${file} cannot be read as JSON`, { cause: e });
  }
  const parsed = labFileSchema.safeParse(json);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    const where = i.path.join('.') || '(top)';
    const what = i.code === 'unrecognized_keys' ? `unknown key ${(i as { keys: string[] }).keys.join(', ')}` : i.message;
    throw new LabError('LAB_CONFIG_INVALID', `lab file ${file}: ${where}: ${what}`);
  }
  const f = parsed.data;
  const p = f.profiles[profile];
  if (!p) throw new LabError('LAB_CONFIG_INVALID', `lab file ${file} has no profile ${profile} (profiles: ${Object.keys(f.profiles).join(', ')})`);
  const base = dirname(resolve(file));
  if (Object.hasOwn(LAB_LINES, p.line) && !Object.hasOwn(f.lines, p.line)) {
    return { name: profile, line: p.line as LabLine, init: p.init, count: p.count };
  }
  const line = f.lines[p.line]!;
  const packs = line.packs.map((x) => resolve(base, x));
  const keyring = resolve(base, f.keys.keyring);
  const recipientKey = f.keys.recipientKey ? resolve(base, f.keys.recipientKey) : null;
  const prints = [await fileFingerprint(keyring, 'the keyring'), ...(recipientKey ? [await fileFingerprint(recipientKey, 'the recipient key')] : [])];
  for (const x of packs) prints.push(await fileFingerprint(x, 'pack'));
  const versions = [];
  for (const x of packs) versions.push(await packVersion(x));
  const fingerprint = createHash('sha256').update(JSON.stringify({ prints, siteVars: p.siteVars, model: line.model ?? null })).digest('hex').slice(0, 12);
  return {
    name: profile,
    line: { name: p.line, version: versions[versions.length - 1]!, packs, keyring, recipientKey, siteVars: p.siteVars, model: line.model ?? null, channel: line.channel ?? null, fingerprint },
    init: p.init,
    count: p.count,
  };
}

/** Versions installed, in order, to reach a built-in line's release. */
export function installChain(line: LabLine): string[] {
  const chain = ['1.0.0', '1.1.0', '1.1.1'];
  return chain.slice(0, chain.indexOf(LAB_LINES[line]) + 1);
}

/** A built-in line: the sample packs (their systemd-runner twins for systemd probes). */
export function builtinLine(line: LabLine, init: ProbeInit, samples: Samples): LineSpec {
  const chain = installChain(line);
  return {
    name: line,
    version: LAB_LINES[line],
    packs: chain.map((v) => samples.packFor(v, init)),
    keyring: samples.rootCert,
    recipientKey: samples.fleetKey,
    // 1.1.0 fills the collector password from a site variable: a random one per layer.
    siteVars: chain.includes('1.1.0') ? { CollectorPassword: randomBytes(12).toString('base64url') } : {},
    model: null,
    channel: line,
    fingerprint: 'samples',
  };
}
