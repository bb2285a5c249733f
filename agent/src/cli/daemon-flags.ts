import { setFlagsFromString } from 'node:v8';

/**
 * `sonde agent run` runs without V8's optimizing compilers (TurboFan, Sparkplug). The daemon
 * spends its life waiting on sockets and timers: the work that is heavy in JavaScript, an
 * install, runs in an installer process that starts with the normal compilers (runtime flags are
 * not inherited). What the compilers cost the daemon is memory: compiling the hot functions of
 * module loading (zod, mqtt) alone kept about 11 MiB resident that an idle daemon never gave
 * back (bench/agent-idle and bench/README.md have the figures).
 *
 * sonde.ts imports this module alone and loads the program only after it: flags set later no
 * longer change what loading has already compiled.
 */
const [command, sub] = process.argv.slice(2);
if (command === 'agent' && sub === 'run') {
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-sparkplug');
}
