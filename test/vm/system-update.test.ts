import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { cutOnce, seeded } from '../../lxc/src/vm/power-cut.js';
import { schemaOfRelease } from '../../lxc/src/vm/power-cut-judge.js';
import { CutNetwork, harnessServer } from '../../lxc/src/vm/power-cut-net.js';
import { parsePointName } from '../../lxc/src/vm/power-cut-points.js';
import { startServer } from '../../server/src/server.js';
import { VmProbe } from '../../lxc/src/vm/vm-probe.js';
import { dropAndBoot, useVmBed, VM_ROOT } from '../helpers/vm.js';

/**
 * The QEMU probe (issue 20, docs/slots.md): a real machine under TCG booting through real GRUB
 * from A/B partitions, the packaged agent on it, system images dropped into its FTP inbox.
 * QEMU is killed for every power cut. Root only (loop devices to build the disk); CI runs as root.
 */
/** How many seeded power cuts CI runs (bench/power-cut runs the campaign); SONDE_VM_CUTS to change. */
const CUTS = Number(process.env.SONDE_VM_CUTS ?? '1');
const SEED = Number(process.env.SONDE_VM_SEED ?? '20');
/** Persistence points CI cuts right after, beside the seeded moments (as bench/power-cut --points prints them). */
const POINTS = (process.env.SONDE_VM_POINTS ?? 'boot 1 installer bootenv:written#2').split(',').filter(Boolean).map(parsePointName);

describe.skipIf(!VM_ROOT)('the QEMU probe: system images through real GRUB, and power cuts', () => {
  const bed = useVmBed('sonde-vm-');

  it('A -> B through GRUB commits; an image whose init fails is abandoned by GRUB; an app failing its health gate is rolled back with a reboot', async () => {
    const probe = new VmProbe(join(bed.scratch, 'story'), bed.images);
    await probe.create();
    try {
      const { packs } = bed.images;
      // 1. 1.1.0 into B: GRUB tries B once, the agent on B health-checks and commits.
      let r = await dropAndBoot(probe, packs['1.1.0'].path, /sonde-grub: booting slot B[\s\S]*sonde-vm: booted slot B/, join(bed.scratch, 'read-1'));
      expect(r.status).toMatchObject({ slot: 'b', version: '1.1.0', dbVersion: 2, lastOutcome: { outcome: 'committed', version: '1.1.0' }, app: { running: true } });
      expect(r.disk.grubenv).toMatchObject({ ORDER: 'B A', B_OK: '1', B_TRY: '0' });
      expect(await probe.slotSha256(2, packs['1.1.0'].imageBytes)).toBe(packs['1.1.0'].imageSha256);

      // 2. A system whose init fails: GRUB boots A once, the kernel panics, GRUB goes back to B.
      r = await dropAndBoot(probe, packs['broken-init'].path, /sonde-grub: booting slot A[\s\S]*this system's init fails[\s\S]*sonde-grub: booting slot B[\s\S]*sonde-vm: booted slot B/, join(bed.scratch, 'read-2'));
      expect(r.status).toMatchObject({ slot: 'b', version: '1.1.0', lastOutcome: { outcome: 'rolled-back', errorCode: 'SYSTEM_BOOT_FAILED', version: '1.1.1' }, app: { running: true } });
      expect(r.disk.grubenv).toMatchObject({ ORDER: 'B A', A_OK: '0', B_OK: '1', B_TRY: '0' });

      // 3. An app failing its health gate: the agent on A rolls back and reboots into B.
      r = await dropAndBoot(probe, packs['1.2.0-bad'].path, /sonde-vm: booted slot A[\s\S]*sonde-grub: booting slot B[\s\S]*sonde-vm: booted slot B/, join(bed.scratch, 'read-3'), 900_000);
      expect(r.status).toMatchObject({ slot: 'b', version: '1.1.0', dbVersion: 2, lastOutcome: { outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED', version: '1.2.0-bad' }, app: { running: true } });
      expect(r.disk.grubenv).toMatchObject({ ORDER: 'B A', A_OK: '0', B_OK: '1', B_TRY: '0' });
    } finally {
      await probe.cut();
    }
  }, 2_400_000);

  it('power cuts at seeded moments and right after persistence points: every probe comes back whole, old or new, and the fleet server shows the same', async () => {
    const expectedSchemaV2 = await schemaOfRelease('1.1.0', bed.scratch);
    // The fleet server on an unrouted bridge, the probe on a tap there, over TLS as in the field.
    const network = await CutNetwork.create(join(bed.scratch, 'net'));
    const fleet = await startServer({ dataDir: join(bed.scratch, 'server'), port: 0, listen: [network.net.hostIp], logLevel: 'warn', keyring: bed.images.keys.rootCert }, { logger: pino({ level: 'warn' }) });
    const server = harnessServer(fleet.httpUrls[0]!, fleet.adminToken!, fleet.httpUrls.find((u) => u.includes(network.net.hostIp))!, network);
    const rnd = seeded(SEED);
    const plans = [
      ...Array.from({ length: CUTS }, () => ({ kind: 'moment' as const, delayMs: Math.round(rnd() * 100_000) })),
      ...POINTS,
    ];
    const results = [];
    try {
      for (const [i, plan] of plans.entries()) {
        const r = await cutOnce(plan, { dir: join(bed.scratch, `cut-${i}`), images: bed.images, expectedSchemaV2, server, index: i + 1 });
        results.push(r);
        process.stdout.write(`power cut ${JSON.stringify(plan)}: phase "${r.phase}", ${r.verdict} (${r.seconds} s)\n`);
      }
    } finally {
      await fleet.close();
      await network.close();
    }
    expect(results.filter((r) => r.verdict === 'inconsistent').map((r) => ({ plan: r.plan, phase: r.phase, checks: r.checks }))).toEqual([]);
    // The server's view was among the checks of every cut.
    expect(results.every((r) => r.checks.server === r.verdict)).toBe(true);
  }, 3_600_000);
});
