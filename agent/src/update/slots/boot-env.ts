import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemCrashPoint } from '../crash.js';
import { UpdateError } from '../errors.js';
import type { BootloaderConfig } from './slot-config.js';

const run = promisify(execFile);

/**
 * The bootloader's side of the A/B pair (docs/slots.md), as RAUC's bootchooser: an order of slots
 * and a try counter per slot, in the bootloader's own environment, written by its own tools.
 *
 * - `grub`: `grub-editenv <env>`; ORDER="A B", <X>_OK (0|1), <X>_TRY (0|1). The documented grub.cfg
 *   boots the first X in ORDER with X_OK=1 and X_TRY=0, setting X_TRY=1 before it does: a slot that
 *   is not marked good again after its boot is skipped at the next one.
 * - `uboot`: `fw_printenv`/`fw_setenv -c <config>`; BOOT_ORDER="A B", BOOT_<X>_LEFT (boots left).
 *   The documented boot script boots the first X with BOOT_X_LEFT > 0, counting it down first.
 *
 * Every change is one write of the environment (one grub-editenv or one fw_setenv run), synced
 * before the agent goes on: a power cut leaves the old environment or the new one, and never an
 * agent that recorded a step the bootloader did not keep. Each write passes `bootenv:written`.
 */
export type BootState = 'good' | 'trying' | 'bad';

/** Boots a slot marked good gets under U-Boot (BOOT_X_LEFT after a good boot). */
export const UBOOT_GOOD_TRIES = 3;

export interface BootEnv {
  readonly type: 'grub' | 'uboot';
  read(): Promise<Map<string, string>>;
  /** One environment write. */
  write(vars: ReadonlyMap<string, string>): Promise<void>;
}

function parseList(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

async function tool(cmd: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(cmd, args, { encoding: 'utf8', timeout: 30_000 })).stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const why = err.code === 'ENOENT' ? `${cmd} is not installed` : (err.stderr ?? '').trim().split('\n').pop() || err.message;
    throw new UpdateError('BOOTLOADER_ENV_FAILED', `${cmd} ${args.join(' ')} failed: ${why}`, { cause: e });
  }
}

class GrubEnv implements BootEnv {
  readonly type = 'grub';
  constructor(private readonly file: string) {}
  async read(): Promise<Map<string, string>> {
    return parseList(await tool('grub-editenv', [this.file, 'list']));
  }
  async write(vars: ReadonlyMap<string, string>): Promise<void> {
    await tool('grub-editenv', [this.file, 'set', ...[...vars].map(([k, v]) => `${k}=${v}`)]);
    // grub-editenv renames a new file over the old one and syncs nothing: the agent must, before
    // it records anything that relies on what the bootloader will do (a power cut would lose it).
    await tool('sync', ['-f', this.file]);
    systemCrashPoint('bootenv:written');
  }
}

class UbootEnv implements BootEnv {
  readonly type = 'uboot';
  constructor(
    private readonly config: string,
    private readonly defaultEnv: string | undefined,
  ) {}
  private base(): string[] {
    return ['-c', this.config, ...(this.defaultEnv ? ['-f', this.defaultEnv] : [])];
  }
  async read(): Promise<Map<string, string>> {
    return parseList(await tool('fw_printenv', this.base()));
  }
  async write(vars: ReadonlyMap<string, string>): Promise<void> {
    // fw_setenv -s (lines of name=value): every variable in one write of the environment (both copies, when redundant).
    const dir = await mkdtemp(join(tmpdir(), 'sonde-fwenv-'));
    try {
      const script = join(dir, 'vars');
      await writeFile(script, [...vars].map(([k, v]) => `${k}=${v}\n`).join(''));
      await tool('fw_setenv', [...this.base(), '-s', script]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // Durable before the agent records what relies on it (a file-backed environment sits in the page cache).
    await tool('sync', []);
    systemCrashPoint('bootenv:written');
  }
}

export function bootEnvOf(c: BootloaderConfig): BootEnv {
  return c.type === 'grub' ? new GrubEnv(c.env) : new UbootEnv(c.config, c.defaultEnv);
}

/** The bootchooser over an environment: what the slot backend asks of the bootloader. */
export class BootChooser {
  constructor(
    readonly env: BootEnv,
    /** The pair's bootnames, in slot order (a, b). */
    private readonly names: readonly string[],
  ) {}

  private orderKey(): string {
    return this.env.type === 'grub' ? 'ORDER' : 'BOOT_ORDER';
  }

  private order(vars: Map<string, string>): string[] {
    const listed = (vars.get(this.orderKey()) ?? '').split(/\s+/).filter((n) => this.names.includes(n));
    return [...listed, ...this.names.filter((n) => !listed.includes(n))];
  }

  stateIn(vars: Map<string, string>, name: string): BootState {
    if (this.env.type === 'grub') {
      if (vars.get(`${name}_OK`) !== '1') return 'bad';
      return vars.get(`${name}_TRY`) === '1' ? 'trying' : 'good';
    }
    const left = Number(vars.get(`BOOT_${name}_LEFT`) ?? '0');
    if (!Number.isInteger(left) || left <= 0) return 'bad';
    return left >= UBOOT_GOOD_TRIES ? 'good' : 'trying';
  }

  async state(name: string): Promise<BootState> {
    return this.stateIn(await this.env.read(), name);
  }

  /** Would the bootloader boot `name`? grub: OK and not yet tried; uboot: boots left. */
  bootableIn(vars: Map<string, string>, name: string): boolean {
    if (this.env.type === 'grub') return vars.get(`${name}_OK`) === '1' && vars.get(`${name}_TRY`) !== '1';
    return Number(vars.get(`BOOT_${name}_LEFT`) ?? '0') > 0;
  }

  /** The slot the bootloader boots next: the first in the order it would still boot. */
  async primary(): Promise<string | null> {
    const vars = await this.env.read();
    return this.order(vars).find((n) => this.bootableIn(vars, n)) ?? null;
  }

  private first(name: string, vars: Map<string, string>): string {
    return [name, ...this.order(vars).filter((n) => n !== name)].join(' ');
  }

  /** `name` first in the order, allowed exactly one boot: unless marked good after it, the next boot skips it. */
  async tryOnce(name: string): Promise<void> {
    const vars = await this.env.read();
    const set = new Map<string, string>([[this.orderKey(), this.first(name, vars)]]);
    if (this.env.type === 'grub') {
      set.set(`${name}_OK`, '1');
      set.set(`${name}_TRY`, '0');
    } else {
      set.set(`BOOT_${name}_LEFT`, '1');
    }
    await this.env.write(set);
  }

  /** `name` booted and passed: good, and (with `primary`) first in the order. */
  async markGood(name: string, opts: { primary?: boolean } = {}): Promise<void> {
    const vars = await this.env.read();
    const set = new Map<string, string>();
    if (opts.primary) set.set(this.orderKey(), this.first(name, vars));
    if (this.env.type === 'grub') {
      set.set(`${name}_OK`, '1');
      set.set(`${name}_TRY`, '0');
    } else {
      set.set(`BOOT_${name}_LEFT`, String(UBOOT_GOOD_TRIES));
    }
    await this.env.write(set);
  }

  /**
   * Never boot `name` (before it is written, and after it failed), and put it last in the order:
   * U-Boot's script boots the first slot in BOOT_ORDER when none has boots left, and that must be
   * the good one, not a slot left at 0 because it is bad (GRUB's OK=0 already keeps it out).
   */
  async markBad(name: string): Promise<void> {
    const vars = await this.env.read();
    const set = new Map<string, string>([[this.orderKey(), [...this.order(vars).filter((n) => n !== name), name].join(' ')]]);
    if (this.env.type === 'grub') {
      set.set(`${name}_OK`, '0');
      set.set(`${name}_TRY`, '0');
    } else {
      set.set(`BOOT_${name}_LEFT`, '0');
    }
    await this.env.write(set);
  }
}
