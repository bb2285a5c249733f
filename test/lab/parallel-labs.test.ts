import { afterAll, describe, expect, it } from 'vitest';
import { LAB_SKIP, openLab, sonde } from '../helpers/lab.js';

/**
 * Two labs brought up at the same moment (two developers, or CI beside a developer) do not
 * collide: each gets its own bridge and its own fleet server. Both once saw the server's default
 * port 8440 free and the second to bind it exited (found by running two `lab up` at once).
 */
const LABS = ['epara', 'eparb'] as const;

describe.skipIf(LAB_SKIP)('two labs brought up at once', () => {
  afterAll(async () => {
    await Promise.all(LABS.map((l) => sonde(['lab', 'down', '--all', '--lab', l])));
  }, 120_000);

  it('both come up, each with its own bridge and its own fleet server', async () => {
    await Promise.all(LABS.map((l) => sonde(['lab', 'down', '--all', '--lab', l])));
    const ups = await Promise.all(LABS.map((l) => sonde(['lab', 'up', '--count', '1', '--line', 'stable', '--lab', l, '--quiet'])));
    for (const [i, up] of ups.entries()) {
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout.trim()).toBe(`${LABS[i]}-01`);
    }
    const states = await Promise.all(LABS.map(async (l) => (await openLab(l)).list()));
    const [a, b] = states.map((s) => s.state!);
    expect(a!.net.bridge).not.toBe(b!.net.bridge);
    expect(a!.net.hostIp).not.toBe(b!.net.hostIp);
    expect(a!.server!.port).not.toBe(b!.server!.port);
    for (const s of states) expect(s.probes.map((p) => [p.server?.online, p.server?.version, p.server?.health])).toEqual([[true, '1.1.0', 'ok']]);
  }, 300_000);
});
