import { parseArgs } from 'node:util';
import { buildSamples } from './sample-packs.js';

/**
 * Entry point of `images/build-samples --out DIR` (the bash wrapper runs this file once built).
 * Prints one line per key set and per pack written; exits 2 on a usage error, 1 on a failure.
 */
const USAGE = 'usage: images/build-samples --out DIR\n';

async function main(argv: string[]): Promise<number> {
  let out: string | undefined;
  try {
    const { values } = parseArgs({ args: argv, options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    out = values.out;
  } catch (e) {
    process.stderr.write(`build-samples: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!out) {
    process.stderr.write(`build-samples: --out DIR is required\n${USAGE}`);
    return 2;
  }
  try {
    await buildSamples(out, { log: (line) => process.stdout.write(`${line}\n`) });
    return 0;
  } catch (e) {
    const err = e as Error & { code?: unknown };
    process.stderr.write(`build-samples: ${typeof err.code === 'string' ? `${err.code}: ` : ''}${err.message}\n`);
    return 1;
  }
}

// A closed pipe (`| head`) must not kill the build half-way and leave its scratch folder behind.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
});
process.exitCode = await main(process.argv.slice(2));
