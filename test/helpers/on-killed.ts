/**
 * Cleanup for a test worker stopped by a signal (Ctrl-C, a timeout's SIGTERM, a `kill`): vitest
 * runs no afterAll then, and what a test started detached (a probe's app, which is meant to
 * outlive its agent; an agent's launcher in a process group of its own) would outlive the test.
 * Every registered cleanup runs, newest first (a test file's before the bed it stands on), bounded
 * by `LIMIT_MS` in all; then the signal is raised again so that the worker still ends by it.
 * `onKilled` returns the function that unregisters its cleanup (call it from the normal cleanup).
 */
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
const LIMIT_MS = 20_000;
const cleanups: (() => Promise<void>)[] = [];

function handler(sig: NodeJS.Signals): void {
  for (const s of SIGNALS) process.off(s, handler);
  const all = (async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  })();
  void Promise.race([all, new Promise((r) => setTimeout(r, LIMIT_MS).unref())]).finally(() => process.kill(process.pid, sig));
}

export function onKilled(cleanup: () => Promise<void>): () => void {
  if (cleanups.length === 0) for (const s of SIGNALS) process.on(s, handler);
  cleanups.push(cleanup);
  return () => {
    const i = cleanups.indexOf(cleanup);
    if (i >= 0) cleanups.splice(i, 1);
    if (cleanups.length === 0) for (const s of SIGNALS) process.off(s, handler);
  };
}
