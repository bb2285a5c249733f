import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintHex, normaliseSerial, verifyRevocations } from '../../pack/src/revocations.js';
import { oddPki, type OddCert } from '../helpers/odd-pki.js';
import { scratch } from '../helpers/packs.js';
import { signedList, verdict } from '../helpers/trust-verdict.js';

/**
 * The revocation list itself (pack/src/revocations.ts): a list an attacker altered, a list whose
 * entries are not what they claim, and serial numbers written several ways. A list that cannot be
 * trusted makes the keyring unusable (fail closed); docs/testing.md has the mutation run.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let root: OddCert;
let other: OddCert;
let key = '';
beforeAll(async () => {
  tmp = await scratch('sonde-revocation-list-');
  const pki = await oddPki(join(tmp.dir, 'pki'));
  root = await pki.make('root', 'root');
  other = await pki.make('other', 'root');
  key = await readFile(root.keyPath, 'utf8');
}, 60_000);
afterAll(() => tmp.cleanup());

const FP = 'ab'.repeat(32);

/** A list signed by the root, revoking these entries. */
function listWith(revoked: { serial?: string; fingerprint256?: string }[]): string {
  return signedList(root, key, 1, revoked);
}

describe('a revocation list', () => {
  it('yields exactly the serials (normalised) and fingerprints it names', () => {
    const l = verifyRevocations(listWith([{ serial: '000ABC' }, { fingerprint256: FP }]), [root.cert]);
    expect([...l.serials]).toEqual(['ABC']);
    expect([...l.fingerprints]).toEqual([FP]);
    expect(l).toMatchObject({ sequence: 1, issuer: fingerprintHex(root.cert) });
  });

  it('is refused whole when an entry is not what it claims: a serial or fingerprint with stray characters, or neither', () => {
    for (const entry of [{ serial: 'XYZ12' }, { serial: '12XYZ' }, { fingerprint256: `x${FP}` }, { fingerprint256: `${FP}x` }, {}]) {
      const text = JSON.stringify({ ...JSON.parse(listWith([])), body: { ...JSON.parse(listWith([])).body, revoked: [{ ...entry, revokedAt: new Date().toISOString() }] } });
      const v = verdict(() => verifyRevocations(text, [root.cert]));
      expect(v, JSON.stringify(entry)).toEqual({ code: 'REVOCATIONS_INVALID', message: 'revocations.json is not a valid revocation list' });
    }
    let cause: unknown;
    try {
      verifyRevocations(JSON.stringify({ ...JSON.parse(listWith([])), body: { ...JSON.parse(listWith([])).body, revoked: [{ revokedAt: new Date().toISOString() }] } }), [root.cert]);
    } catch (e) {
      cause = (e as Error).cause;
    }
    expect(String((cause as Error).message)).toContain('serial or fingerprint256 required');
  });

  it('is refused when its issuer is not a fingerprint, names a root not held, or its signature is not canonical base64', () => {
    const good = JSON.parse(listWith([])) as { body: { issuer: string }; signature: string };
    for (const issuer of [`x${fingerprintHex(root.cert)}`, `${fingerprintHex(root.cert)}x`]) {
      expect(verdict(() => verifyRevocations(JSON.stringify({ ...good, body: { ...good.body, issuer } }), [root.cert])).code).toBe('REVOCATIONS_INVALID');
    }
    expect(verdict(() => verifyRevocations(listWith([]), [other.cert]))).toEqual({ code: 'REVOCATIONS_INVALID', message: 'revocations.json is signed by a root that is not in the keyring' });
    const padded = good.signature.endsWith('=') ? good.signature.replace(/=+$/, '') : `${good.signature}=`;
    const v = verdict(() => verifyRevocations(JSON.stringify({ ...good, signature: padded }), [root.cert]));
    expect(v.code).toBe('REVOCATIONS_INVALID');
  });
});

describe('serial numbers', () => {
  it('compare as upper-case hex without separators or leading zeros, zero itself kept', () => {
    expect(normaliseSerial('00:0a:bc')).toBe('ABC');
    expect(normaliseSerial('0A BC')).toBe('ABC');
    expect(normaliseSerial('000')).toBe('0');
    expect(normaliseSerial('0')).toBe('0');
    expect(normaliseSerial('10')).toBe('10');
  });

  it('refuse anything else, naming it', () => {
    for (const bad of ['zz', '12g', 'g12', '', '-1']) {
      expect(verdict(() => normaliseSerial(bad)), bad).toEqual({ code: 'REVOCATIONS_INVALID', message: `not a hex serial number: ${bad}` });
    }
  });
});
