import { describe, expect, it } from 'vitest';
import { phaseOf, verdictOf, wholeEndings } from '../../lxc/src/vm/power-cut-judge.js';
import { AT_POINT_OR_REST } from '../../lxc/src/vm/power-cut.js';

/**
 * How the power-cut harness names where a cut landed and judges what the probe came back as
 * (docs/slots.md, "Power cuts"): from console excerpts and check answers, no VM needed.
 */
const BOOT_1 = [
  'sonde-vm: booted slot A (ddfd57d4) boot 1',
  '04:58:03.224 INFO  agent started  probeId=vm-offline root=/data/probe',
  '04:58:09.778 INFO  install started  pack=/data/drop/incoming/system-1.2.0-bad.spk',
  '04:58:14.645 INFO  install state  deploymentId=d1 state=verified',
  '04:58:59.857 INFO  install state  deploymentId=d1 state=staged',
  '04:59:00.278 INFO  install state  deploymentId=d1 state=trial',
  'The system is going down NOW!',
  'sonde-grub: booting slot B',
];
const BOOT_2 = ['sonde-vm: booted slot B (aa11) boot 2', '04:59:30.001 INFO  agent started  probeId=vm-offline root=/data/probe'];
const ROLLBACK = ['04:59:50.100 INFO  install state  deploymentId=d1 state=rolling-back'];
const REBOOT = ['The system is going down NOW!', 'sonde-grub: booting slot A'];
const BOOT_3 = ['sonde-vm: booted slot A (bb22) boot 3'];
const upTo = (...parts: string[][]): string => parts.flat().join('\n');

describe('where a power cut landed', () => {
  it('follows the install from its start to the first boot of the new slot', () => {
    expect(phaseOf(upTo(BOOT_1.slice(0, 2)))).toBe('before the install');
    expect(phaseOf(upTo(BOOT_1.slice(0, 3)))).toBe('download and verify');
    expect(phaseOf(upTo(BOOT_1.slice(0, 4)))).toBe('image write and migration');
    expect(phaseOf(upTo(BOOT_1.slice(0, 5)))).toBe('switch');
    expect(phaseOf(upTo(BOOT_1.slice(0, 6)))).toBe('reboot asked');
    expect(phaseOf(upTo(BOOT_1.slice(0, 7)))).toBe('reboot');
    expect(phaseOf(upTo(BOOT_1))).toBe('first boot (bootloader, kernel)');
    expect(phaseOf(upTo(BOOT_1, BOOT_2))).toBe('first boot (agent, health gate)');
    expect(phaseOf(upTo(BOOT_1, BOOT_2, ['05:00:01.000 WARN  recovered an interrupted install  deploymentId=d1 state=committed']))).toBe('commit');
  });

  it('names the rollback of an app that failed its health gate, its reboot, and the old slot coming back', () => {
    expect(phaseOf(upTo(BOOT_1, BOOT_2, ROLLBACK))).toBe('rollback');
    expect(phaseOf(upTo(BOOT_1, BOOT_2, ROLLBACK, REBOOT))).toBe('rollback reboot');
    expect(phaseOf(upTo(BOOT_1, BOOT_2, ROLLBACK, REBOOT, BOOT_3))).toBe('back in the old slot');
  });
});

describe('what a probe came back as', () => {
  const all = (answer: string): Record<string, string> => ({ booted: answer, bootloader: answer, slot: answer, database: answer, config: answer, journal: answer, server: answer });

  it('is old or new only when every check says the same', () => {
    expect(verdictOf(all('old'))).toBe('old');
    expect(verdictOf(all('new'))).toBe('new');
    expect(verdictOf({ ...all('new'), database: 'old' })).toBe('inconsistent');
    expect(verdictOf({ ...all('old'), journal: '1 deployment(s) left open' })).toBe('inconsistent');
  });

  it('never takes a committed image whose app fails its health gate, or whose init fails, as whole', () => {
    expect(wholeEndings('1.1.0')).toEqual(['old', 'new']);
    for (const pack of ['1.2.0-bad', 'broken-init'] as const) {
      expect(verdictOf(all('old'), pack)).toBe('old');
      expect(verdictOf(all('new'), pack)).toBe('inconsistent');
    }
  });
});

describe('when a point cut stops waiting', () => {
  const status = (booted: string, primary: string): string =>
    `sonde-status: {"inbox":0,"status":{"ok":true,"slot":"${booted}","slots":[{"name":"a","boot":"good"}],"boot":{"type":"block","booted":"${booted}","primary":"${primary}"},"unfinished":null}}`;

  it('at its point, or at rest in the slot the bootloader boots next, not between a rollback and its reboot', () => {
    expect(AT_POINT_OR_REST.exec('sonde-cut-here: rollback:db-restored#2')?.[1]).toBe('rollback:db-restored#2');
    expect(AT_POINT_OR_REST.test(status('b', 'a'))).toBe(false);
    expect(AT_POINT_OR_REST.test(status('a', 'a'))).toBe(true);
  });
});
