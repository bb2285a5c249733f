/**
 * Every error Sonde raises on purpose carries a stable string `code` (documented in
 * docs/errors.md, kept in step by test/docs/error-codes.test.ts) and, where there is one, the
 * underlying `cause`. Messages never contain secret values: callers pass names, not values.
 */
export abstract class SondeError<Code extends string = string> extends Error {
  readonly code: Code;
  abstract readonly domain: string;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

export function isSondeError(e: unknown): e is SondeError {
  return e instanceof SondeError;
}

/** Ends every exhaustive switch: the compiler proves this line unreachable. */
export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${String(x)}`);
}
