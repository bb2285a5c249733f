import { Socket } from 'node:net';

/**
 * Whether a TCP connection to `host:port` opens now: how a test or a benchmark knows that a
 * broker or server it started has begun to listen. Loopback by default.
 */
export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      s.destroy();
      resolve(false);
    });
    s.connect(port, host);
  });
}
