import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import type { Layout } from '../layout.js';
import { readReleaseInfo, runnerOf, type RunnerType } from '../release-info.js';
import { ProcessRunner } from './process-runner.js';
import type { AppRunner, StartContext } from './runner.js';
import { SystemdRunner, type SystemdState } from './systemd-runner.js';

/**
 * The runner of the probe (AppRunner): each release says in its release.json how it runs, so the
 * runner is chosen per start, and `<state>/runner.json` remembers which one runs what (it
 * outlives a reboot: systemd starts an enabled unit again, and the agent must know it is its own). A stop, a
 * liveness or health check and the last words then go to the runner that started the app, even
 * across an agent restart and when the next release uses another runner (the old release's
 * systemd units are stopped and their files removed before a `process` release starts).
 */
const stateSchema = z
  .object({
    type: z.enum(['process', 'exec', 'systemd']),
    slot: z.string(),
    version: z.string(),
    stopTimeoutMs: z.number().int().positive().optional(),
    systemd: z
      .object({
        units: z.array(z.string()),
        unitFiles: z.array(z.string()),
        restarts: z.record(z.string(), z.number()),
        startedAt: z.number(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type RunnerState = z.infer<typeof stateSchema>;

export class ReleaseRunner implements AppRunner {
  private readonly stateFile: string;
  private readonly processes: ProcessRunner;
  private readonly systemd: SystemdRunner;

  constructor(private readonly layout: Layout) {
    this.stateFile = layout.runnerState;
    this.processes = new ProcessRunner(layout);
    this.systemd = new SystemdRunner();
  }

  /** What runs, as the last start recorded it; null before any start (a `process` app, if any). */
  async state(): Promise<RunnerState | null> {
    let text: string;
    try {
      text = await readFile(this.stateFile, 'utf8');
    } catch {
      return null;
    }
    const parsed = stateSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  }

  /** The runner type of what runs (or last ran) here. */
  async type(): Promise<RunnerType> {
    return (await this.state())?.type ?? 'process';
  }

  async start(slotDir: string): Promise<void> {
    const release = await readReleaseInfo(join(slotDir, 'app'));
    const c: StartContext = { slotDir, release, probeRoot: this.layout.root };
    const spec = runnerOf(release);
    const before = await this.state();
    if ((await this.running()) !== null) await this.stop();
    const previousUnits = before?.type === 'systemd' ? (before.systemd ?? null) : null;
    if (previousUnits !== null && spec.type !== 'systemd') await this.systemd.remove(previousUnits);
    const base = { type: spec.type, slot: slotDir, version: release.version };
    if (spec.type === 'systemd') {
      const record = (u: SystemdState): Promise<void> => this.save({ ...base, systemd: { ...u, units: [...u.units], unitFiles: [...u.unitFiles], restarts: { ...u.restarts } } });
      await record(await this.systemd.start(c, spec.units, previousUnits, record));
      return;
    }
    // Recorded before the spawn: an agent killed right after it still knows how to stop the app.
    await this.save({ ...base, ...(spec.type === 'exec' && spec.stopTimeoutMs !== undefined ? { stopTimeoutMs: spec.stopTimeoutMs } : {}) });
    await this.processes.start(c);
  }

  async stop(): Promise<void> {
    const s = await this.state();
    if (s?.type === 'systemd' && s.systemd) {
      await this.systemd.stop(s.systemd);
      return;
    }
    await this.processes.stop(s?.stopTimeoutMs);
  }

  async running(): Promise<number | null> {
    const s = await this.state();
    if (s?.type === 'systemd' && s.systemd) return this.systemd.running(s.systemd);
    return this.processes.running();
  }

  async check(): Promise<string | null> {
    const s = await this.state();
    if (s?.type === 'systemd' && s.systemd) return this.systemd.check(s.systemd);
    return null;
  }

  async lastWords(maxBytes = 2048): Promise<string | null> {
    const s = await this.state();
    if (s?.type === 'systemd' && s.systemd) return this.systemd.lastWords(s.systemd, maxBytes);
    return this.processes.lastWords(maxBytes);
  }

  private async save(s: RunnerState): Promise<void> {
    await mkdir(dirname(this.stateFile), { recursive: true });
    await writeFileAtomic(this.stateFile, `${JSON.stringify(s)}\n`);
  }
}

export type { SystemdState };
