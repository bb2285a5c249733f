#!/usr/bin/env node
// `npm run docs:cli`: writes docs/cli.md from the commander definitions (cli/src/cli-reference.ts).
import { writeFileSync } from 'node:fs';
import { buildProgram } from '../dist/cli/src/build-program.js';
import { missingHelp, renderCliReference } from '../dist/cli/src/cli-reference.js';

const program = buildProgram();
const missing = missingHelp(program);
if (missing.length > 0) process.stderr.write(`without help text (add a description):\n  ${missing.join('\n  ')}\n`);
writeFileSync(new URL('../docs/cli.md', import.meta.url), renderCliReference(program));
process.stdout.write('wrote docs/cli.md\n');
