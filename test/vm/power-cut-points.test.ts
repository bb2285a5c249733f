import { describe, expect, it } from 'vitest';
import { parsePointName, pointName, pointsOf, stableName } from '../../lxc/src/vm/power-cut-points.js';

/**
 * The power-cut harness's list of persistence points (docs/slots.md, "Power cuts"), read from a
 * recorded console: no VM needed. Each point must be one a later run can cut at again.
 */
const RECORDED = [
  'sonde-vm: booted slot A (0b1c2d3e-aaaa) boot 1',
  'sonde-point: 301 agent bootenv:written',
  'sonde-point: 301 agent write:before-rename:status.json',
  'sonde-point: 301 agent write:after-rename:status.json',
  'sonde-point: 420 installer bootenv:written',
  'sonde-point: 420 installer stage:target-marked-bad',
  'sonde-point: 420 installer write:before-rename:2ca27af304f9bd4a.key',
  'sonde-point: 420 installer bootenv:written',
  'sonde-point: 301 agent write:before-rename:status.json',
  'sonde-vm: booted slot B (9f8e7d6c-bbbb) boot 2',
  'sonde-point: 288 agent bootenv:written',
  'sonde-point: 288 agent write:before-rename:20261207-010323158-6fad3519.json',
  'sonde-point: 290 agent bootenv:written',
].join('\n');

describe('the persistence points a power-cut campaign cuts after', () => {
  it('keeps each boot and process apart, counts within a process, and makes run-time file names patterns', () => {
    expect(pointsOf(RECORDED).map(pointName)).toEqual([
      'boot 1 agent bootenv:written#1',
      'boot 1 agent write:before-rename:status.json#1',
      'boot 1 agent write:after-rename:status.json#1',
      'boot 1 installer bootenv:written#1',
      'boot 1 installer stage:target-marked-bad#1',
      'boot 1 installer write:before-rename:*.key#1',
      'boot 1 installer bootenv:written#2',
      'boot 1 agent write:before-rename:status.json#2',
      'boot 2 agent bootenv:written#1',
      'boot 2 agent write:before-rename:*-*-*.json#1',
    ]);
  });

  it('counts afresh in a later boot whose process got the same pid', () => {
    const twoBoots = ['sonde-vm: booted slot A (aa) boot 1', 'sonde-point: 170 agent bootenv:written', 'sonde-vm: booted slot A (bb) boot 3', 'sonde-point: 170 agent bootenv:written'].join('\n');
    expect(pointsOf(twoBoots).map(pointName)).toEqual(['boot 1 agent bootenv:written#1', 'boot 3 agent bootenv:written#1']);
  });

  it('reads back what it prints, so a test can cut at a point the bench listed', () => {
    for (const p of pointsOf(RECORDED)) expect(parsePointName(pointName(p))).toEqual(p);
    expect(parsePointName('bootenv:written#2')).toEqual({ kind: 'point', at: 'bootenv:written#2' });
    expect(() => parsePointName('boot x agent')).toThrow(/not a persistence point/);
  });

  it('leaves names fixed at build time alone', () => {
    expect(stableName('config.json')).toBe('config.json');
    expect(stableName('system-1.1.0.spk.receipt.json')).toBe('system-1.1.0.spk.receipt.json');
    expect(stableName('feedface.json')).toBe('*.json');
  });
});
