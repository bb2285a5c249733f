import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AEAD_CHUNK_STORED, AEAD_TAG_BYTES } from '../../pack/src/format.js';
import type { PackCode } from '../../pack/src/errors.js';
import { makeGenuinePacks, tallyRefusals, type GenuinePack } from '../helpers/integrity-fixture.js';
import { entryNamed, flipped } from '../helpers/pack-layout.js';
import { expectRefused } from '../helpers/pack-run.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld } from '../helpers/pki-fixture.js';
import { expectRefusedCleanly, makeSandbox } from '../helpers/sandbox.js';

/**
 * A single changed byte anywhere that matters is refused: in the signed manifest (recipients
 * included), in the signature envelope, in a payload (by the AEAD chunk that holds it, or by the
 * signed hash), and in the tar headers that frame them.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let packs: GenuinePack[];
let boxes = 0;
const sandbox = async () => makeSandbox(tmp.dir, `box-${++boxes}`);

beforeAll(async () => {
  tmp = await scratch('sonde-flip-');
  packs = await makeGenuinePacks(await pkiWorld(), tmp.dir);
});
afterAll(() => tmp.cleanup());

function* flipsOf(pack: GenuinePack, from: number, to: number): Generator<readonly [string, Buffer]> {
  for (let at = from; at < to; at++) yield [`${pack.label} byte ${at}`, flipped(pack.bytes, at)];
}

const byLabel = (label: GenuinePack['label']): GenuinePack => packs.find((p) => p.label === label)!;

describe.each(['plain', 'encrypted'] as const)('a %s pack', (label) => {
  it('refuses a flip in any byte of manifest.json with SIGNATURE_INVALID', async () => {
    const pack = byLabel(label);
    const box = await sandbox();
    const m = entryNamed(pack.layout, 'manifest.json');
    // The signature is checked over the exact bytes before anything parses them.
    expect(await tallyRefusals(flipsOf(pack, m.data, m.dataEnd), pack.run, box)).toEqual({ SIGNATURE_INVALID: m.dataEnd - m.data });
    await expectRefusedCleanly(box);
  });

  it('refuses a flip in any byte of manifest.sig', async () => {
    const pack = byLabel(label);
    const box = await sandbox();
    const s = entryNamed(pack.layout, 'manifest.sig');
    const tally = await tallyRefusals(flipsOf(pack, s.data, s.dataEnd), pack.run, box);
    // Which code depends on what the flip hits: the JSON or base64 syntax or a certificate's DER
    // (SIGNATURE_MALFORMED), the signature value or the signer's key (SIGNATURE_INVALID, or
    // SIGNER_KEY_UNSUPPORTED when the key no longer reads as RSA-3072), a signed part of the
    // signer certificate (CHAIN_INVALID: the intermediate's signature on it fails), or the
    // intermediate certificate (CHAIN_UNTRUSTED: no keyring root signed it any more).
    const allowed: PackCode[] = ['SIGNATURE_MALFORMED', 'SIGNATURE_INVALID', 'SIGNER_KEY_UNSUPPORTED', 'CHAIN_INVALID', 'CHAIN_UNTRUSTED'];
    expect(Object.keys(tally).filter((c) => !allowed.includes(c as PackCode))).toEqual([]);
    expect(Object.values(tally).reduce((a, b) => a + b, 0)).toBe(s.dataEnd - s.data);
    await expectRefusedCleanly(box);
  });

  it('refuses a flip in the sonde-bundle marker', async () => {
    const pack = byLabel(label);
    const box = await sandbox();
    const m = entryNamed(pack.layout, 'sonde-bundle');
    const tally = await tallyRefusals(flipsOf(pack, m.data, m.dataEnd), pack.run, box);
    // A flip after "sonde-bundle " (in the version or the newline) reads as another format
    // version; a flip in the name is not a marker at all.
    const versionBytes = m.dataEnd - m.data - 'sonde-bundle '.length;
    expect(tally).toEqual({ PACK_FORMAT: 'sonde-bundle '.length, PACK_UNSUPPORTED_VERSION: versionBytes });
    await expectRefusedCleanly(box);
  });
});

describe('an encrypted pack', () => {
  it('refuses a flip in any byte of a recipient entry with SIGNATURE_INVALID', async () => {
    const pack = byLabel('encrypted');
    const box = await sandbox();
    const m = entryNamed(pack.layout, 'manifest.json');
    const text = pack.bytes.subarray(m.data, m.dataEnd).toString('latin1');
    const from = m.data + text.indexOf('"recipients"');
    const to = m.data + text.indexOf(']', text.indexOf('"wrappedKey"')) + 1;
    expect(to - from).toBeGreaterThan(512);
    expect(await tallyRefusals(flipsOf(pack, from, to), pack.run, box)).toEqual({ SIGNATURE_INVALID: to - from });
    await expectRefusedCleanly(box);
  });

  it('refuses a flip in each sealed chunk with DECRYPT_FAILED at that chunk, body or tag', async () => {
    const pack = byLabel('encrypted');
    for (const name of ['payloads/01-app', 'payloads/02-config']) {
      const p = entryNamed(pack.layout, name);
      const chunks = Math.ceil((p.dataEnd - p.data) / AEAD_CHUNK_STORED);
      if (name === 'payloads/01-app') expect(chunks).toBe(3);
      for (let k = 0; k < chunks; k++) {
        const start = p.data + k * AEAD_CHUNK_STORED;
        const end = Math.min(start + AEAD_CHUNK_STORED, p.dataEnd);
        for (const at of [start, Math.floor((start + end - AEAD_TAG_BYTES) / 2), end - AEAD_TAG_BYTES, end - 1]) {
          const box = await sandbox();
          const e = await expectRefused(flipped(pack.bytes, at), { ...pack.run, staging: box.staging }, 'DECRYPT_FAILED');
          expect(e.message).toContain(`chunk ${k} `);
          await expectRefusedCleanly(box);
        }
      }
    }
  });
});

describe('a plain pack', () => {
  it('refuses a flip in a payload with PAYLOAD_HASH_MISMATCH, wherever it lands in the payload tar', async () => {
    const pack = byLabel('plain');
    const p = entryNamed(pack.layout, 'payloads/01-app');
    const spots = {
      'the first tar header (a name)': p.data,
      'a header size field': p.data + 124 + 5,
      'file data': p.data + 3 * 512 + 100,
      'the middle of the big file': p.data + 80 * 1024,
      'the end-of-archive block': p.dataEnd - 1,
    };
    for (const [what, at] of Object.entries(spots)) {
      const box = await sandbox();
      const e = await expectRefused(flipped(pack.bytes, at), { ...pack.run, staging: box.staging }, 'PAYLOAD_HASH_MISMATCH');
      expect(e.message, what).toContain('payloads/01-app');
      await expectRefusedCleanly(box);
    }
  });
});

describe('the tar headers of a pack', () => {
  it('refuses a flip in any byte of any header or of the end block, and any other spelling of a checksum', async () => {
    const pack = byLabel('plain');
    const box = await sandbox();
    const headers = [...pack.layout.entries.map((e) => e.header), pack.layout.endMarker];
    function* mutants(): Generator<readonly [string, Buffer]> {
      for (const h of headers) {
        for (let at = h; at < h + 512; at++) {
          // Every other byte is summed into the checksum, so one flip stands for any change; the
          // checksum field is not, so it gets every value a lenient reader would still take.
          const values = at - h >= 148 && at - h < 156 ? [0x00, 0x20, ...'01234567'.split('').map((c) => c.charCodeAt(0))] : [pack.bytes[at]! ^ 0x01];
          for (const value of values) {
            if (value === pack.bytes[at]) continue;
            const out = Buffer.from(pack.bytes);
            out[at] = value;
            yield [`header byte ${at} set to ${value}`, out];
          }
        }
      }
    }
    expect(Object.keys(await tallyRefusals(mutants(), pack.run, box))).toEqual(['PACK_FORMAT']);
    await expectRefusedCleanly(box);
  });

  it.each([
    ['a mode changed', (b: Buffer) => b.write('0000755\0', 100, 'ascii')],
    ['an mtime set', (b: Buffer) => b.write('14712345670\0', 136, 'ascii')],
    ['an owner name changed', (b: Buffer) => b.write('mallory\0', 265, 'ascii')],
    ['the type written as NUL', (b: Buffer) => (b[156] = 0)],
    ['text after the name', (b: Buffer) => b.write('\0x', 'manifest.json'.length, 'ascii')],
  ])('refuses a manifest header re-encoded with %s and its checksum recomputed', async (_what, edit) => {
    const pack = byLabel('plain');
    const box = await sandbox();
    const h = entryNamed(pack.layout, 'manifest.json').header;
    const bytes = Buffer.from(pack.bytes);
    const block = bytes.subarray(h, h + 512);
    edit(block);
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of block) sum += b;
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    const e = await expectRefused(bytes, { ...pack.run, staging: box.staging }, 'PACK_FORMAT');
    expect(e.message).toContain('not in the form Sonde writes');
    await expectRefusedCleanly(box);
  });
});
