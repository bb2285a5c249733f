import { createRequire } from 'node:module';
import type * as JsoncParser from 'jsonc-parser';

/**
 * JSON.parse for a file that may hold a secret (site-vars.json, the probe's credentials, a
 * config with site variables filled in). V8's own messages quote the text around a syntax error
 * (`Unexpected token 'h', "hunter2" is not valid JSON`), so such a message must never reach a
 * log, a receipt, an event or the server. This says where the text stops being JSON (line and
 * column, found by jsonc-parser, a maintained parser that reports offsets) and never what is
 * there. The caller wraps the result in its own domain's coded error.
 */
export class SecretJsonError extends Error {
  override readonly name = 'SecretJsonError';
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly column: number | null,
    readonly problem: string,
  ) {
    super(`${file} is not valid JSON${line !== null ? ` (line ${line}, column ${column}: ${problem})` : ` (${problem})`}`);
  }
}

/** Line and column (from 1) of `offset` in `text`. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** Parses `text`, read from `file`; a syntax error is a SecretJsonError that quotes nothing of the text. */
export function parseSecretJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Only where: JSON.parse's own error (and its message) is dropped here, on purpose. The
    // locating parser is loaded on this error path only: the daemon reads these files at start
    // and idles for months, and would otherwise keep it resident for nothing.
    const { parse, printParseErrorCode } = createRequire(import.meta.url)('jsonc-parser') as typeof JsoncParser;
    const errors: JsoncParser.ParseError[] = [];
    parse(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
    const first = errors[0];
    if (first === undefined) throw new SecretJsonError(file, null, null, 'not valid JSON');
    const at = lineColumn(text, first.offset);
    throw new SecretJsonError(file, at.line, at.column, printParseErrorCode(first.error));
  }
}
