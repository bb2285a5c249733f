import { parseArgs } from 'node:util';

/**
 * A benchmark's command line, read with node's own `util.parseArgs` (strict): `--help` prints the
 * usage and exits 0; an option the benchmark does not know, a value missing or a stray word is an
 * error that names it, prints the usage and exits 2, before anything is started or removed. (A
 * bench that read only the options it knew ran its whole default campaign on `--help`, wiping
 * the previous run's results first.)
 */
export interface BenchArgs {
  /** The value of `--name`, or `def` when it is not given. */
  arg(name: string, def: string): string;
  /** The number `--name` gives (a usage error when it is not one, or outside min..max), or `def` when it is not given. */
  num(name: string, def: number, min?: number, max?: number): number;
  /** Whether the flag `--name` is given. */
  flag(name: string): boolean;
}

export interface BenchOptions {
  /** Options that take a value (`--cuts 10`). */
  readonly values: readonly string[];
  /** Options that take none (`--points`). */
  readonly flags?: readonly string[];
}

/** Parses `argv` (default: this process's) against `options`; throws BenchUsageError. */
export function parseBenchArgs(usage: string, options: BenchOptions, argv: readonly string[] = process.argv.slice(2)): BenchArgs & { help: boolean } {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const name of options.values) config[name] = { type: 'string' };
  for (const name of options.flags ?? []) config[name] = { type: 'boolean' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: config, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new BenchUsageError(`${(e as Error).message}\n${usage}`);
  }
  const arg = (name: string, def: string): string => {
    if (!options.values.includes(name)) throw new Error(`bench: --${name} is not one of its options`);
    const v = values[name];
    return typeof v === 'string' && v.length > 0 ? v : def;
  };
  return {
    help: values.help === true,
    arg,
    num: (name, def, min = -Infinity, max = Infinity) => {
      const v = arg(name, '');
      if (v === '') return def;
      const n = Number(v);
      if (!Number.isFinite(n)) throw new BenchUsageError(`--${name} takes a number, not "${v}"\n${usage}`);
      if (n < min || n > max) {
        const range = max === Infinity ? `of at least ${min}` : min === -Infinity ? `of at most ${max}` : `from ${min} to ${max}`;
        throw new BenchUsageError(`--${name} takes a number ${range}, not ${v}\n${usage}`);
      }
      return n;
    },
    flag: (name) => {
      if (!(options.flags ?? []).includes(name)) throw new Error(`bench: --${name} is not one of its flags`);
      return values[name] === true;
    },
  };
}

export class BenchUsageError extends Error {}

/** parseBenchArgs for a benchmark's main: usage on `--help` (exit 0), usage and exit 2 on a bad line. */
export function benchArgs(usage: string, options: BenchOptions): BenchArgs {
  const parsed = usageOrExit(() => parseBenchArgs(usage, options));
  if (parsed.help) {
    console.log(usage);
    process.exit(0);
  }
  return { arg: parsed.arg, flag: parsed.flag, num: (name, def, min, max) => usageOrExit(() => parsed.num(name, def, min, max)) };
}

/** Runs `fn`; a usage error is printed and ends the process with 2. */
function usageOrExit<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof BenchUsageError)) throw e;
    console.error(e.message);
    process.exit(2);
  }
}
