import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPrivateKey, readCertificateFile, readPassphraseFile } from '../../pack/src/key-files.js';
import { writeCertificate, writePrivateKey } from '../../images/src/keys/key-write.js';
import { createRootCa, type IssuedCertificate } from '../../images/src/keys/issue.js';
import { KeysError } from '../../pack/src/keys-errors.js';

// A passphrase planted to check that no error message ever repeats it.
const CANARY = 'canary-passphrase-Ünïcødé-7f3a';

async function caught(promise: Promise<unknown>): Promise<KeysError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(KeysError);
    return e as KeysError;
  }
  throw new Error('expected a KeysError');
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

describe('key files', { timeout: 30_000 }, () => {
  let dir: string;
  let root: IssuedCertificate;
  let passFile: string;
  let wrongPassFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sonde-key-files-'));
    root = await createRootCa({ days: 30 });
    passFile = join(dir, 'pass');
    wrongPassFile = join(dir, 'wrong-pass');
    await writeFile(passFile, `${CANARY}\n`, { mode: 0o600 });
    await writeFile(wrongPassFile, 'not the passphrase\n', { mode: 0o600 });
  }, 30_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('writePrivateKey', () => {
    it('writes an unencrypted PKCS#8 key with mode 0600 whatever the umask', async () => {
      const path = join(dir, 'plain.key');
      const umask = process.umask(0);
      try {
        await writePrivateKey(path, root.keyPem);
      } finally {
        process.umask(umask);
      }
      expect(await mode(path)).toBe(0o600);
      const text = await readFile(path, 'utf8');
      expect(text.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
      expect(createPrivateKey(text).equals(createPrivateKey(root.keyPem))).toBe(true);
    });

    it('writes an encrypted PKCS#8 key that Node reads with the passphrase only', async () => {
      const path = join(dir, 'encrypted.key');
      await writePrivateKey(path, root.keyPem, { passphrase: CANARY });
      expect(await mode(path)).toBe(0o600);
      const text = await readFile(path, 'utf8');
      expect(text.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----\n')).toBe(true);
      expect(createPrivateKey({ key: text, format: 'pem', passphrase: CANARY }).equals(createPrivateKey(root.keyPem))).toBe(true);
      expect(() => createPrivateKey({ key: text, format: 'pem' })).toThrow();
      expect(() => createPrivateKey({ key: text, format: 'pem', passphrase: 'guess' })).toThrow();
    });

    it('uses PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC', async () => {
      const path = join(dir, 'encrypted.key');
      const der = Buffer.from(
        (await readFile(path, 'utf8')).replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''),
        'base64',
      );
      const oid = (dotted: string): Buffer => {
        const [a = 0, b = 0, ...rest] = dotted.split('.').map(Number);
        const bytes = [40 * a + b];
        for (const n of rest) {
          const chunk = [n & 0x7f];
          for (let v = n >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
          bytes.push(...chunk);
        }
        return Buffer.from([0x06, bytes.length, ...bytes]);
      };
      expect(der.includes(oid('1.2.840.113549.1.5.13'))).toBe(true); // PBES2
      expect(der.includes(oid('1.2.840.113549.1.5.12'))).toBe(true); // PBKDF2
      expect(der.includes(oid('1.2.840.113549.2.9'))).toBe(true); // hmacWithSHA256
      expect(der.includes(oid('2.16.840.1.101.3.4.1.42'))).toBe(true); // aes256-CBC
    });

    it('refuses to replace an existing key unless forced', async () => {
      const path = join(dir, 'plain.key');
      const before = await readFile(path, 'utf8');
      const e = await caught(writePrivateKey(path, root.keyPem));
      expect(e.code).toBe('KEY_EXISTS');
      expect(await readFile(path, 'utf8')).toBe(before);
      await writePrivateKey(path, root.keyPem, { force: true });
      expect(await mode(path)).toBe(0o600);
    });

    it('refuses to write something that is not a private key', async () => {
      const e = await caught(writePrivateKey(join(dir, 'junk.key'), root.certPem));
      expect(e.code).toBe('KEY_UNREADABLE');
    });
  });

  describe('loadPrivateKey', () => {
    it('loads an unencrypted key', async () => {
      const key = await loadPrivateKey(join(dir, 'plain.key'));
      expect(key.type).toBe('private');
      expect(new X509Certificate(root.certPem).checkPrivateKey(key)).toBe(true);
    });

    it('loads an encrypted key with the right passphrase file', async () => {
      const key = await loadPrivateKey(join(dir, 'encrypted.key'), { passphraseFile: passFile });
      expect(new X509Certificate(root.certPem).checkPrivateKey(key)).toBe(true);
    });

    it.each([
      { what: 'without a passphrase file', passphraseFile: undefined as string | undefined },
      { what: 'with a wrong passphrase', passphraseFile: 'WRONG' },
    ])('refuses an encrypted key $what with KEY_PASSPHRASE_WRONG', async ({ passphraseFile }) => {
      const e = await caught(
        loadPrivateKey(join(dir, 'encrypted.key'), {
          passphraseFile: passphraseFile === 'WRONG' ? wrongPassFile : passphraseFile,
        }),
      );
      expect(e.code).toBe('KEY_PASSPHRASE_WRONG');
      expect(e.message).toContain('encrypted.key');
    });

    it('never puts the passphrase in an error message', async () => {
      // The canary file holds the right passphrase for another key; here it is the wrong one.
      const other = join(dir, 'other-encrypted.key');
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      await writeFile(
        other,
        privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'something else' }),
        { mode: 0o600 },
      );
      const e = await caught(loadPrivateKey(other, { passphraseFile: passFile }));
      expect(e.code).toBe('KEY_PASSPHRASE_WRONG');
      const seen = `${e.message}\n${String(e.stack)}\n${JSON.stringify(e)}\n${String((e.cause as Error | undefined)?.message)}`;
      expect(seen).not.toContain(CANARY);
      expect(seen).not.toContain('canary');
    });

    it.each([
      { what: 'a missing file', content: null, code: 'KEY_UNREADABLE' },
      { what: 'a file that is not a key', content: 'hello\n', code: 'KEY_UNREADABLE' },
      { what: 'a certificate', content: 'CERT', code: 'KEY_UNREADABLE' },
    ])('refuses $what with $code', async ({ content, code }) => {
      const path = join(dir, `bad-${code}-${Math.random().toString(36).slice(2)}.key`);
      if (content !== null) await writeFile(path, content === 'CERT' ? root.certPem : content);
      const e = await caught(loadPrivateKey(path));
      expect(e.code).toBe(code);
    });

    it('reads a passphrase file that is missing as PASSPHRASE_UNREADABLE', async () => {
      const e = await caught(loadPrivateKey(join(dir, 'encrypted.key'), { passphraseFile: join(dir, 'nope') }));
      expect(e.code).toBe('PASSPHRASE_UNREADABLE');
    });
  });

  describe('readPassphraseFile', () => {
    it.each([
      { content: 'secret\n', expected: 'secret' },
      { content: 'secret\r\n', expected: 'secret' },
      { content: 'secret', expected: 'secret' },
      { content: 'secret\n\n', expected: 'secret\n' },
      { content: ' spaced secret \n', expected: ' spaced secret ' },
    ])('reads $content as $expected, dropping one trailing newline', async ({ content, expected }) => {
      const path = join(dir, 'p');
      await writeFile(path, content);
      expect(await readPassphraseFile(path)).toBe(expected);
    });

    it('refuses an empty passphrase', async () => {
      const path = join(dir, 'empty');
      await writeFile(path, '\n');
      expect((await caught(readPassphraseFile(path))).code).toBe('PASSPHRASE_UNREADABLE');
    });
  });

  describe('writeCertificate', () => {
    it('writes a certificate with mode 0644 and refuses to replace it unless forced', async () => {
      const path = join(dir, 'root.crt');
      await writeCertificate(path, root.certPem);
      expect(await mode(path)).toBe(0o644);
      expect((await caught(writeCertificate(path, root.certPem))).code).toBe('KEY_EXISTS');
      await writeCertificate(path, root.certPem, { force: true });
      const file = await readCertificateFile(path);
      expect(file.certs).toHaveLength(1);
      expect(file.certs[0]?.fingerprint256).toBe(new X509Certificate(root.certPem).fingerprint256);
    });

    it('reads back a file that holds no certificate as CERT_UNREADABLE', async () => {
      const path = join(dir, 'not-a.crt');
      await writeFile(path, 'nothing here\n');
      expect((await caught(readCertificateFile(path))).code).toBe('CERT_UNREADABLE');
      expect((await caught(readCertificateFile(join(dir, 'missing.crt')))).code).toBe('CERT_UNREADABLE');
    });
  });
});
