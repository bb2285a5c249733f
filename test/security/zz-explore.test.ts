import { it } from 'vitest';
import { BundleError } from '../../agent/src/bundle/errors.js';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { pkiWorld } from '../helpers/pki-fixture.js';
import { packTree, scratch, writeTree } from '../helpers/packs.js';
import { layoutOf, entryNamed, flipped } from '../helpers/pack-layout.js';
import { runPack } from '../helpers/pack-run.js';

it('explore', async () => {
  const w = await pkiWorld();
  const tmp = await scratch();
  await writeTree(join(tmp.dir, 'src'), { 'a.txt': 'hello' });
  const plain = await packTree({ signer: w.vendor.signer } as never, join(tmp.dir, 'src'), join(tmp.dir, 'p.spk'), { compression: 'none' });
  const bytes = await readFile(plain);
  const e = entryNamed(layoutOf(bytes), 'manifest.sig');
  const sig = bytes.subarray(e.data, e.dataEnd).toString();
  let shown = 0;
  for (let i = e.data; i < e.dataEnd; i++) {
    try { await runPack(flipped(bytes, i), { keyring: w.vendor.keyring, mode: 'hash-only' }); }
    catch (err) {
      if (!(err instanceof BundleError) && shown++ < 3) {
        const at = i - e.data;
        const certIdx = sig.slice(0, at).split('BEGIN CERTIFICATE').length - 1;
        console.log('offset', at, 'cert', certIdx, (err as Error).stack?.split('\n').slice(0, 8).join('\n'));
      }
    }
  }
  await tmp.cleanup();
}, 300_000);
