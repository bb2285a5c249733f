import { afterEach, describe, expect, it, vi } from 'vitest';
import { onKilled } from '../helpers/on-killed.js';

/**
 * The test helpers' cleanup when a worker is stopped by a signal (test/helpers/on-killed.ts): a
 * probe app started detached once outlived a vitest run stopped with SIGTERM.
 */
describe('a test worker stopped by a signal', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('stops what the tests started, then ends by the same signal', async () => {
    const raised: unknown[] = [];
    vi.spyOn(process, 'kill').mockImplementation((pid, sig) => {
      raised.push([pid, sig]);
      return true;
    });
    let cleaned = false;
    const before = process.listeners('SIGTERM').length;
    const off = onKilled(async () => {
      cleaned = true;
    });
    try {
      process.emit('SIGTERM', 'SIGTERM');
      await vi.waitFor(() => expect(raised).toEqual([[process.pid, 'SIGTERM']]));
      expect(cleaned).toBe(true);
      // Once only: the handler is gone, the next signal is the default one.
      expect(process.listeners('SIGTERM').length).toBe(before);
    } finally {
      off();
    }
  });

  it('runs every cleanup, the newest first, before the one re-raise', async () => {
    const raised: unknown[] = [];
    vi.spyOn(process, 'kill').mockImplementation((pid, sig) => {
      raised.push([pid, sig]);
      return true;
    });
    const order: string[] = [];
    const offBed = onKilled(async () => {
      order.push('bed');
    });
    const offFile = onKilled(async () => {
      await new Promise((r) => setTimeout(r, 50));
      order.push('launchers');
    });
    try {
      process.emit('SIGINT', 'SIGINT');
      await vi.waitFor(() => expect(raised).toEqual([[process.pid, 'SIGINT']]));
      expect(order).toEqual(['launchers', 'bed']);
    } finally {
      offFile();
      offBed();
    }
  });

  it('does nothing once the normal cleanup unregistered it', () => {
    const before = process.listeners('SIGINT').length;
    const off = onKilled(async () => undefined);
    expect(process.listeners('SIGINT').length).toBe(before + 1);
    off();
    expect(process.listeners('SIGINT').length).toBe(before);
  });
});
