import { isIP } from 'node:net';
import type { Socket } from 'node:net';

/**
 * Bounds on what the embedded broker buffers for a client (issue 18, "the broker before
 * authentication"). aedes' MQTT parser keeps a packet's bytes until the whole packet has arrived,
 * and a packet may declare up to 256 MiB: a client that sends a CONNECT header declaring hundreds
 * of megabytes, then trickles bytes, would make the broker hold them all before it even learns who
 * the client is. This guard reads the MQTT framing (a fixed-header byte, then the remaining length
 * as a 1-4 byte varint, MQTT 3.1.1 section 2.2.3) of every packet as it arrives and closes the
 * connection as soon as a declared length passes its limit: the first packet (CONNECT, before any
 * authentication) may hold a few KiB; later ones the largest legitimate message.
 */
export interface FrameLimits {
  /** The first packet, the CONNECT: client id, username, token and last will. */
  readonly firstPacket: number;
  /** Every packet after it: the largest message a probe may publish, plus its topic and header. */
  readonly packet: number;
}

export class MqttFrameGuard {
  private phase: 'type' | 'length' | 'body' = 'type';
  private remaining = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private packets = 0;

  constructor(private readonly limits: FrameLimits) {}

  /** Whether the first packet's fixed header has been read (and found within its limit). */
  get headerDone(): boolean {
    return this.packets > 0;
  }

  /** Follows the framing through `chunk`; returns why the connection must close, or null. */
  feed(chunk: Buffer): string | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.phase === 'body') {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.phase = 'type';
        continue;
      }
      const byte = chunk[i++]!;
      if (this.phase === 'type') {
        this.phase = 'length';
        this.remaining = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        continue;
      }
      this.remaining += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes += 1;
      if (byte & 0x80) {
        if (this.lengthBytes === 4) return 'a remaining length longer than 4 bytes';
        continue;
      }
      const limit = this.packets === 0 ? this.limits.firstPacket : this.limits.packet;
      this.packets += 1;
      if (this.remaining > limit) {
        return `packet ${this.packets} declares ${this.remaining} bytes; at most ${limit} ${this.packets === 1 ? 'before the client is authenticated' : 'per message'}`;
      }
      this.phase = this.remaining === 0 ? 'type' : 'body';
    }
    return null;
  }
}

/**
 * Reads the first packet's fixed header (2 to 5 bytes) before anyone else sees the socket: a
 * connection whose CONNECT is over the limit is closed before the broker makes a client for it
 * (parser, session state), which under a flood of such connections is most of what each costs.
 * The bytes read are put back (unshift) for the broker. Resolves false when the connection was
 * closed, by the guard or by the peer.
 */
export function firstHeaderFits(socket: Socket, limits: FrameLimits, onBreach: (why: string) => void, timeoutMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    const guard = new MqttFrameGuard({ firstPacket: limits.firstPacket, packet: limits.packet });
    const seen: Buffer[] = [];
    const timer = setTimeout(() => finish(false, 'no packet header within the connect timeout'), timeoutMs);
    const finish = (ok: boolean, why?: string): void => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      if (!ok) {
        if (why !== undefined) onBreach(why);
        socket.destroy();
      } else if (seen.length > 0) {
        socket.unshift(Buffer.concat(seen));
      }
      resolve(ok);
    };
    const onClose = (): void => finish(false);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        seen.push(chunk);
        const why = guard.feed(chunk);
        if (why !== null) return finish(false, why);
        if (guard.headerDone) return finish(true);
      }
    };
    socket.on('readable', onReadable);
    socket.on('close', onClose);
  });
}

/**
 * Watches `socket` with a frame guard: the broker reads the socket in paused mode, and a 'data'
 * listener sees each chunk as the broker reads it, before the broker parses it. On a breach the
 * socket is destroyed, so the broker never buffers more than what one read returned.
 */
export function guardFrames(socket: Socket, limits: FrameLimits, onBreach: (why: string) => void): void {
  const guard = new MqttFrameGuard(limits);
  socket.on('data', (chunk: Buffer) => {
    const why = guard.feed(chunk);
    if (why !== null && !socket.destroyed) {
      onBreach(why);
      socket.destroy();
    }
  });
}

/**
 * Connection attempts per source address: a token bucket each (`burst` at once, `perSecond`
 * refilled), so one host cannot hold the broker busy with connects. Probes behind one customer
 * NAT share an address, hence a generous default; loopback (the server's own machine) is exempt
 * unless told otherwise.
 */
export interface ConnectLimit {
  readonly perSecond: number;
  readonly burst: number;
  readonly exemptLoopback: boolean;
}

export const DEFAULT_CONNECT_LIMIT: ConnectLimit = Object.freeze({ perSecond: 50, burst: 200, exemptLoopback: true });

function isLoopback(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith('127.');
  return address === '::1' || address.startsWith('::ffff:127.');
}

export class ConnectLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly limit: ConnectLimit = DEFAULT_CONNECT_LIMIT) {}

  /** Takes a token for a connection from `address`; false when its bucket is empty. */
  admit(address: string | undefined, now = Date.now()): boolean {
    if (address === undefined) return true;
    if (this.limit.exemptLoopback && isLoopback(address)) return true;
    const b = this.buckets.get(address) ?? { tokens: this.limit.burst, at: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
    b.at = now;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(address, b);
    // Full buckets hold no information: dropping them keeps the map to the addresses that matter.
    if (this.buckets.size > 10_000) for (const [a, x] of this.buckets) if (x.tokens >= this.limit.burst) this.buckets.delete(a);
    return ok;
  }
}
