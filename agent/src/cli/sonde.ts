#!/usr/bin/env node
/**
 * The `sonde` executable. Its static imports are only daemon-flags.js, which sets the V8 flags of
 * `sonde agent run` before anything else is loaded: Node's module loader is itself JavaScript, and
 * loading the program's ~180 modules is enough work for V8 to optimize it. The program (every
 * subcommand) is program.ts.
 */
import './daemon-flags.js';

await import('./program.js');
