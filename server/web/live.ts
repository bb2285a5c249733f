import type { LiveChange } from './api-types.js';

/**
 * The one live stream of the page (GET /api/v1/live, Server-Sent Events). EventSource reconnects
 * by itself; after a reconnect the views re-read everything (`resync`), since what changed while
 * the stream was down is not replayed.
 */
export class Live {
  private source: EventSource | null = null;
  private wasOpen = false;

  constructor(
    private readonly onChange: (c: LiveChange) => void,
    private readonly onStatus: (connected: boolean) => void,
    private readonly onSignedOut: () => void,
  ) {}

  start(): void {
    const s = new EventSource('/api/v1/live');
    this.source = s;
    s.addEventListener('hello', () => {
      if (this.wasOpen) this.onChange({ resync: true });
      this.wasOpen = true;
      this.onStatus(true);
    });
    s.addEventListener('change', (e) => {
      try {
        this.onChange(JSON.parse((e as MessageEvent<string>).data) as LiveChange);
      } catch {
        // A malformed message is dropped; the next one carries on.
      }
    });
    s.addEventListener('signed-out', () => {
      this.stop();
      this.onSignedOut();
    });
    s.onerror = () => this.onStatus(false);
  }

  stop(): void {
    this.source?.close();
    this.source = null;
  }
}
