import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Client } from 'basic-ftp';
import { CliError } from '../../base/src/cli/cli-error.js';
import { LabError } from './errors.js';

/**
 * Support staff's side of the FTP drop (docs/ftp-drop.md): an anonymous upload into incoming/
 * as NAME.part, renamed to NAME once every byte is there, so the agent never takes a cut upload
 * for a whole one.
 */
export async function ftpPut(host: string, file: string, onProgress?: (sent: number, total: number) => void): Promise<string> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (e) {
    throw new CliError('INPUT_UNREADABLE', `cannot read ${file}`, { cause: e });
  }
  const name = basename(file);
  const client = new Client(30_000);
  try {
    await client.access({ host, port: 21, user: 'anonymous', password: 'lab@sonde', secure: false });
    if (onProgress) client.trackProgress((info) => onProgress(info.bytes, size));
    await client.uploadFrom(file, `incoming/${name}.part`);
    client.trackProgress();
    await client.rename(`incoming/${name}.part`, `incoming/${name}`);
    return `incoming/${name}`;
  } catch (e) {
    throw new LabError('LAB_PROBE_FAILED', `FTP upload of ${name} to ${host}: ${(e as Error).message}`, { cause: e });
  } finally {
    client.close();
  }
}
