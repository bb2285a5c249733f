/**
 * Starts and stops the probe application (DESIGN.md, "The agent"): `systemd` on a real probe
 * (restart the unit), `process` in standalone use and tests: a detached child with a pid file.
 */
export interface AppRunner {
  /** Starts the app of the release in `slotDir`; resolves once it has been spawned. */
  start(slotDir: string): Promise<void>;
  /** Stops the app if it runs; resolves when it has exited. */
  stop(): Promise<void>;
  /** The pid of the running app, or null. */
  running(): Promise<number | null>;
  /**
   * The last lines the app wrote since it was last started here (at most `maxBytes`), or null
   * when there are none: what a health verdict quotes when the app died, so that an operator
   * reads why without logging in to the probe.
   */
  lastWords(maxBytes?: number): Promise<string | null>;
}
