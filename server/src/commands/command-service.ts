import type { DownloadLimits } from '../../../base/src/protocol/download-limits.js';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { commandSchema, type Command } from '../../../base/src/protocol/messages.js';
import { topics } from '../../../base/src/protocol/topics.js';
import { ServerError } from '../errors.js';
import type { IngestQueue } from '../inventory/ingest-queue.js';
import type { Metrics } from '../metrics/registry.js';
import type { Bus } from '../mqtt/bus.js';
import { ACKNOWLEDGED_TYPES, TERMINAL_STATUSES, type CommandChange, type CommandRecord, type Store } from '../store/types.js';

/**
 * Commands to probes (issue 5): the seam the rollouts module drives. A command is stored first
 * (persist, then act), then published over MQTT (never retained; the QoS is the bus's) and kept until the probe
 * acknowledges it by an event. Until then it is published again whenever the probe (re)connects,
 * and handed out by `GET /api/v1/probes/{id}/next` to a probe that polls because its MQTT link is
 * down. Probes recognise a command they saw before by its id, so repeating one is harmless.
 *
 * Fan-outs are published in chunks with a turn of the event loop between them: aedes pushes
 * everything through one queue, and 10,000 commands at once stall state ingest for about a
 * second (notes/fleet-facts.md).
 */
export type CommandSpec =
  | {
      readonly type: 'install';
      readonly packSha256: string;
      readonly download?: DownloadLimits;
      /** An agent pack a probe whose agent is older than `minAgentVersion` installs first. */
      readonly agentFirst?: { readonly packSha256: string; readonly minAgentVersion: string };
    }
  | { readonly type: 'cancel'; readonly target: string }
  | { readonly type: 'report-now' }
  | { readonly type: 'rollback' }
  | { readonly type: 'diagnose' };

/** The largest diagnostics bundle a probe may upload (it trims its log to fit). */
export const DIAGNOSTICS_MAX_BYTES = 8 * 1024 * 1024;

export interface SendOptions {
  /** Recorded with each command, so a rollout can find its commands and their outcomes. */
  readonly rolloutId?: string | undefined;
  /**
   * The command id for each probe, when the caller must be able to send again without sending
   * twice (a rollout resuming after a restart derives its ids from the rollout, probe and
   * attempt, and checks which already exist). Default: a fresh id.
   */
  readonly commandIdFor?: ((probeId: string) => string) | undefined;
}

export type CommandListener = (changes: readonly CommandChange[]) => void | Promise<void>;

export interface CommandServiceOptions {
  readonly store: Store;
  readonly bus: Bus;
  readonly ingest: IngestQueue;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The pack URL for a probe: its enrolled base URL, else the server's default. */
  readonly defaultHttpBase: string;
  readonly chunkSize?: number;
  /** How long before `/next` hands out an unacknowledged command again. */
  readonly pollRepeatMs?: number;
}

export function newCommandId(): string {
  return `c-${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
}

export class CommandService {
  private readonly listeners = new Set<CommandListener>();
  private readonly chunkSize: number;
  private readonly pollRepeatMs: number;

  constructor(private readonly o: CommandServiceOptions) {
    this.chunkSize = o.chunkSize ?? 200;
    this.pollRepeatMs = o.pollRepeatMs ?? 60_000;
    o.ingest.onApplied(async (r) => {
      if (r.connected.length > 0) await this.redeliver(r.connected);
      if (r.commandChanges.length > 0) {
        for (const l of this.listeners) {
          try {
            await l(r.commandChanges);
          } catch (e) {
            o.log.error({ err: (e as Error).message }, 'command listener failed');
          }
        }
      }
    });
  }

  /** Hears every status change the probes' events cause (accepted, running, succeeded, failed, …). */
  onChange(listener: CommandListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async send(probeId: string, spec: CommandSpec, opts: SendOptions = {}): Promise<CommandRecord> {
    return (await this.sendMany([probeId], spec, opts))[0]!;
  }

  /** One command per probe, stored in one transaction, then published in chunks. */
  async sendMany(probeIds: readonly string[], spec: CommandSpec, opts: SendOptions = {}): Promise<CommandRecord[]> {
    const ids = [...new Set(probeIds)].sort();
    const bases = await this.o.store.probes.httpBases(ids);
    const missing = ids.filter((id) => !bases.has(id));
    if (missing.length > 0) {
      throw new ServerError('PROBE_NOT_FOUND', `no probe ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    }
    const pack = spec.type === 'install' ? await this.o.store.packs.get(spec.packSha256) : null;
    if (spec.type === 'install' && !pack) throw new ServerError('PACK_NOT_FOUND', `no pack ${spec.packSha256}`);
    const agentPack = spec.type === 'install' && spec.agentFirst ? await this.o.store.packs.get(spec.agentFirst.packSha256) : null;
    if (spec.type === 'install' && spec.agentFirst && !agentPack) throw new ServerError('PACK_NOT_FOUND', `no pack ${spec.agentFirst.packSha256}`);
    const now = new Date().toISOString();
    const records: CommandRecord[] = ids.map((id) => {
      const p = { id, httpBase: bases.get(id) ?? null };
      const commandId = opts.commandIdFor?.(p.id) ?? newCommandId();
      const common = { v: 1 as const, commandId, probeId: p.id, issuedAt: now };
      const body: Command =
        spec.type === 'install'
          ? {
              ...common,
              type: 'install',
              ...(opts.rolloutId !== undefined ? { rolloutId: opts.rolloutId } : {}),
              pack: { url: `${(p.httpBase ?? this.o.defaultHttpBase).replace(/\/+$/, '')}/api/v1/packs/${pack!.sha256}/content`, sha256: pack!.sha256, size: pack!.size },
              ...(spec.download ? { download: spec.download } : {}),
              ...(spec.agentFirst && agentPack
                ? {
                    agentFirst: {
                      minAgentVersion: spec.agentFirst.minAgentVersion,
                      pack: { url: `${(p.httpBase ?? this.o.defaultHttpBase).replace(/\/+$/, '')}/api/v1/packs/${agentPack.sha256}/content`, sha256: agentPack.sha256, size: agentPack.size },
                    },
                  }
                : {}),
            }
          : spec.type === 'cancel'
            ? { ...common, type: 'cancel', target: spec.target }
            : spec.type === 'diagnose'
              ? {
                  ...common,
                  type: 'diagnose',
                  upload: { url: `${(p.httpBase ?? this.o.defaultHttpBase).replace(/\/+$/, '')}/api/v1/probes/${p.id}/diagnostics/${commandId}`, maxBytes: DIAGNOSTICS_MAX_BYTES },
                }
              : { ...common, type: spec.type };
      // The shared schema is what the agent parses: a command it would refuse is never stored.
      const checked = commandSchema.parse(body);
      return {
        commandId,
        probeId: p.id,
        type: checked.type,
        body: checked,
        rolloutId: opts.rolloutId ?? null,
        packSha256: pack?.sha256 ?? null,
        status: 'pending',
        errorCode: null,
        deploymentId: null,
        createdAt: now,
        sentAt: null,
        updatedAt: now,
        finishedAt: null,
      };
    });
    await this.o.store.commands.insertMany(records);
    await this.publish(records);
    // A fan-out's caller follows its commands through onChange(); a few are read back as they are now.
    if (records.length > 100) return records;
    return Promise.all(records.map(async (r) => (await this.o.store.commands.get(r.commandId)) ?? r));
  }

  /**
   * Publishes in chunks. Install and rollback commands count as sent once published (and stay
   * unacknowledged until the probe answers); commands nothing acknowledges count as delivered only when the
   * probe is online, else they wait for it to come back.
   */
  private async publish(records: readonly CommandRecord[]): Promise<void> {
    // A fan-out: the acknowledgements it brings back wait until it is out (ingest-queue.ts).
    const release = records.length > this.chunkSize ? this.o.ingest.hold() : null;
    try {
      await this.publishChunks(records);
    } finally {
      release?.();
    }
  }

  private async publishChunks(records: readonly CommandRecord[]): Promise<void> {
    const published = new Set<string>();
    for (let i = 0; i < records.length; i += this.chunkSize) {
      const chunk = records.slice(i, i + this.chunkSize);
      await Promise.all(
        chunk.map(async (c) => {
          try {
            await this.o.bus.publish(topics.commands(c.probeId), JSON.stringify(c.body));
            published.add(c.commandId);
            this.o.metrics.commandsSent.inc({ type: c.type });
          } catch (e) {
            this.o.log.warn({ commandId: c.commandId, probeId: c.probeId, err: (e as Error).message }, 'command not published; kept for the next connection');
          }
        }),
      );
      if (i + this.chunkSize < records.length) await nextTurn();
    }
    // One transaction for the whole call: a command published but not yet marked is still
    // unacknowledged, and goes out again on the probe's next connection.
    const others = records.filter((c) => !ACKNOWLEDGED_TYPES.has(c.type) && published.has(c.commandId));
    const online = others.length ? new Set(await this.o.store.probes.match({ probeIds: others.map((c) => c.probeId), online: true })) : new Set<string>();
    const sent = records.filter((c) => published.has(c.commandId) && (ACKNOWLEDGED_TYPES.has(c.type) || online.has(c.probeId))).map((c) => c.commandId);
    if (sent.length) await this.o.store.commands.markSent(sent, new Date().toISOString());
  }

  /** Publishes again every command these probes have not acknowledged (they just connected). */
  async redeliver(probeIds: readonly string[]): Promise<void> {
    const pending = await this.o.store.commands.unacknowledged(probeIds);
    if (pending.length === 0) return;
    this.o.log.info({ commands: pending.length, probes: probeIds.length }, 'redelivering unacknowledged commands');
    await this.publish(pending);
  }

  /** `/next`: the command a polling probe should see now, or null. */
  async next(probeId: string): Promise<Command | null> {
    const now = new Date();
    const c = await this.o.store.commands.takeForPoll(probeId, now.toISOString(), new Date(now.getTime() - this.pollRepeatMs).toISOString());
    return c?.body ?? null;
  }

  /**
   * Cancels a command. One the probe never acknowledged is cancelled at once (a probe that still
   * receives it will be told to cancel too); one it is running gets a cancel command, and its
   * final status comes from the probe's own events.
   */
  async cancel(commandId: string): Promise<CommandRecord> {
    const c = await this.get(commandId);
    if (TERMINAL_STATUSES.has(c.status)) return c;
    if (c.status === 'pending' || c.status === 'sent') await this.o.store.commands.finish(commandId, 'cancelled', new Date().toISOString());
    if (c.status !== 'pending') await this.send(c.probeId, { type: 'cancel', target: commandId }, { rolloutId: c.rolloutId ?? undefined });
    return this.get(commandId);
  }

  async get(commandId: string): Promise<CommandRecord> {
    const c = await this.o.store.commands.get(commandId);
    if (!c) throw new ServerError('NOT_FOUND', `no command ${commandId}`);
    return c;
  }

  forProbe(probeId: string, limit = 50): Promise<CommandRecord[]> {
    return this.o.store.commands.forProbe(probeId, limit);
  }

  forRollout(rolloutId: string): Promise<CommandRecord[]> {
    return this.o.store.commands.forRollout(rolloutId);
  }
}
