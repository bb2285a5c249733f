import { runCommand } from '../../base/src/cli/run-command.js';
import { buildProgram } from './build-program.js';

/** The full program (sonde.ts loads it for every command but the lean daemon start). */
const program = buildProgram();
await runCommand(() => program.parseAsync(process.argv));
