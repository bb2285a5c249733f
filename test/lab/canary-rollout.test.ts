import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bringUp, LAB_SKIP, labSamples, probeStatus, sonde, waitUntil } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';
import type { LabServerClient } from '../../lxc/src/lab-server.js';

/**
 * A canary-first rollout of the bad release (1.2.0-bad fails its health check) to five LXC probes:
 * the canary installs it, fails its health checks and rolls back by itself; the rollout pauses
 * itself on the error threshold; the other four never receive a command.
 */
const LAB = 'ecanary';

interface RolloutStatus {
  state: string;
  reason?: string | null;
  pauseReason?: string | null;
}
interface Target {
  probeId: string;
  wave: number;
  state: string;
  commandId: string | null;
  errorCode: string | null;
}

describe.skipIf(LAB_SKIP)('a canary-first rollout of a bad release to 5 LXC probes', () => {
  let lab: Lab;
  let client: LabServerClient;
  let names: string[] = [];

  beforeAll(async () => {
    ({ lab, client, names } = await bringUp(LAB, 5, 'stable'));
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
  }, 120_000);

  it('rolls back on the canary, pauses, and the other 4 never receive it', async () => {
    expect(names).toHaveLength(5);
    const { body: pack } = await client.api.upload<{ sha256: string; version: string }>('/api/v1/packs', labSamples().packs['1.2.0-bad']);
    expect(pack.version).toBe('1.2.0-bad');
    const { body: created } = await client.api.json<{ id: string }>('POST', '/api/v1/rollouts', {
      name: 'bad release, canary first',
      packSha256: pack.sha256,
      target: { probeIds: names },
      strategy: { canary: { probes: 1 }, waves: [100], errorThreshold: 0, advance: { mode: 'wait', seconds: 1 } },
    });
    const paused = await waitUntil(
      'the rollout to pause itself',
      async () => {
        const { body } = await client.api.json<RolloutStatus>('GET', `/api/v1/rollouts/${created.id}`);
        return body.state === 'paused' ? body : null;
      },
      120_000,
      500,
    );
    expect(paused.state).toBe('paused');
    const { body: targets } = await client.api.json<Target[]>('GET', `/api/v1/rollouts/${created.id}/targets`);
    const canary = targets.filter((t) => t.wave === 0 || t.commandId !== null);
    expect(canary).toHaveLength(1);
    expect(canary[0]).toMatchObject({ state: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
    const canaryName = canary[0]!.probeId;

    // The canary is back on 1.1.0, healthy, by its own account and the server's.
    const own = await probeStatus(lab, canaryName);
    expect(own.version).toBe('1.1.0');
    expect(own.app.running).toBe(true);
    expect(own.lastOutcome).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
    await waitUntil('the server to see the canary healthy on 1.1.0', async () => {
      const p = await client.probe(canaryName);
      return p?.version === '1.1.0' && p.health === 'ok';
    });

    // Wait a little longer than the rollout's 1 s wait: nothing more may go out.
    await new Promise((r) => setTimeout(r, 3000));
    for (const name of names.filter((n) => n !== canaryName)) {
      const t = targets.find((x) => x.probeId === name)!;
      expect(t).toMatchObject({ commandId: null, state: 'pending' });
      const detail = (await client.probe(name)) as unknown as { commands: unknown[]; version: string };
      expect(detail.commands).toEqual([]);
      expect(detail.version).toBe('1.1.0');
      const status = await probeStatus(lab, name);
      expect(status.version).toBe('1.1.0');
      // The probe itself never saw a command or a download.
      expect(await lab.agentLog(name)).not.toMatch(/download|command accepted/i);
    }
  });
});
