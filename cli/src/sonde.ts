#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

/**
 * The `sonde` executable. `sonde agent run --config FILE`, the daemon that lives on every probe
 * for months, starts lean; every other command (and any other form of `agent run`: `--help`, a
 * usage error) goes to the full program in program.ts.
 *
 * Lean means two things, both measured by bench/agent-idle (bench/README.md has the figures):
 * - no CLI framework loaded: the one form is recognised here, commander is never imported;
 * - no optimizing compilers (TurboFan, Sparkplug). The daemon waits on sockets and timers; the
 *   work that is heavy in JavaScript, an install, runs in an installer process that starts with
 *   the normal compilers (runtime flags are not inherited). What the compilers cost is memory:
 *   compiling the functions that loading the daemon's modules makes hot (Node's module loader is
 *   JavaScript too) left about 11 MiB resident. So the flags are set here, before any other
 *   module of the program is loaded: this file's only static import is node:v8;
 * - a young generation that does not grow (semi-space growth factor 1): under the steady small
 *   allocations of back-to-back installs V8 doubled it to 2-4 MiB and kept it; at its initial
 *   size the daemon's peak over 200 installs fell from 72 to 64 MiB.
 */
function daemonConfig(argv: readonly string[]): string | null {
  if (argv[0] !== 'agent' || argv[1] !== 'run') return null;
  if (argv.length === 4 && argv[2] === '--config' && argv[3] !== '' && !argv[3]!.startsWith('-')) return argv[3]!;
  if (argv.length === 3 && argv[2]!.startsWith('--config=') && argv[2]!.length > '--config='.length) return argv[2]!.slice('--config='.length);
  return null;
}

const config = daemonConfig(process.argv.slice(2));
if (config !== null) {
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-sparkplug');
  setFlagsFromString('--semi-space-growth-factor=1');
  const [{ runCommand }, { runDaemon }] = await Promise.all([import('../../base/src/cli/run-command.js'), import('../../agent/src/daemon/run.js')]);
  await runCommand(() => runDaemon(config));
} else {
  await import('./program.js');
}
