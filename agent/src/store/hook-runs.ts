import type Database from 'better-sqlite3';

/**
 * agent.db's `hook_runs` (migration 6): one row per deployment and hook, written before the hook
 * runs and completed when it ends, so that a hook runs at most once per deployment even across
 * a crash (agent/src/update/hooks.ts). Output is stored already masked: no site-variable value
 * ever reaches this table.
 */
export interface HookRun {
  readonly hook: string;
  readonly startedAt: string;
  /** Null while it runs, and for good when the agent died while it ran (never run again). */
  readonly endedAt: string | null;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly ms: number | null;
  readonly output: string;
}

interface Row {
  hook: string;
  started_at: string;
  ended_at: string | null;
  exit_code: number | null;
  signal: string | null;
  ms: number | null;
  output: string | null;
}

const of = (r: Row): HookRun => ({ hook: r.hook, startedAt: r.started_at, endedAt: r.ended_at, exitCode: r.exit_code, signal: r.signal, ms: r.ms, output: r.output ?? '' });

export class HookRunStore {
  constructor(private readonly db: Database.Database) {}

  get(deploymentId: string, hook: string): HookRun | null {
    const r = this.db.prepare('SELECT hook, started_at, ended_at, exit_code, signal, ms, output FROM hook_runs WHERE deployment_id = ? AND hook = ?').get(deploymentId, hook) as Row | undefined;
    return r ? of(r) : null;
  }

  all(deploymentId: string): HookRun[] {
    const rows = this.db.prepare('SELECT hook, started_at, ended_at, exit_code, signal, ms, output FROM hook_runs WHERE deployment_id = ? ORDER BY started_at, rowid').all(deploymentId) as Row[];
    return rows.map(of);
  }

  started(deploymentId: string, hook: string): void {
    this.db.prepare('INSERT INTO hook_runs (deployment_id, hook, started_at) VALUES (?, ?, ?)').run(deploymentId, hook, new Date().toISOString());
  }

  ended(deploymentId: string, hook: string, r: { exitCode: number | null; signal: string | null; ms: number; output: string }): HookRun {
    this.db
      .prepare('UPDATE hook_runs SET ended_at = ?, exit_code = ?, signal = ?, ms = ?, output = ? WHERE deployment_id = ? AND hook = ?')
      .run(new Date().toISOString(), r.exitCode, r.signal, r.ms, r.output, deploymentId, hook);
    return this.get(deploymentId, hook)!;
  }
}
