import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/src/build-program.js';
import { missingHelp, renderCliReference } from '../../cli/src/cli-reference.js';

/** docs/cli.md is the program's own description (issue 23): it cannot drift, and nothing lacks help. */
describe('docs/cli.md', () => {
  const program = buildProgram();

  it('is what `npm run docs:cli` renders from the commander definitions today', () => {
    const doc = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
    expect(doc, 'run `npm run docs:cli` and commit docs/cli.md').toBe(renderCliReference(program));
  });

  it('has help text for every command, argument and option', () => {
    expect(missingHelp(program)).toEqual([]);
  });

  it('names every command a user can run, the contracts included', () => {
    const doc = renderCliReference(program);
    for (const heading of ['### sonde agent run', '## sonde rollback', '## sonde probe', '### sonde server backup', '### sonde lab up', '### sonde rollout create']) expect(doc).toContain(heading);
    expect(doc).toContain('| `-o, --output <file>` |');
  });
});
