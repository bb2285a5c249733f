import { execFile } from 'node:child_process';

/**
 * sd_notify through the `systemd-notify` binary (Node cannot open a Unix datagram socket). Only
 * when NOTIFY_SOCKET is set; the unit needs NotifyAccess=all because the message comes from a
 * child process. A missing binary is ignored: the notification is optional.
 */
export class SystemdNotifier {
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** The unit's main process: the launcher when the agent runs under it (packaging/sonde-agent-launch), else this one. */
  private get mainPid(): number {
    const launcher = Number(this.env.SONDE_AGENT_LAUNCHER_PID);
    return Number.isSafeInteger(launcher) && launcher > 1 ? launcher : process.pid;
  }

  get enabled(): boolean {
    return typeof this.env.NOTIFY_SOCKET === 'string' && this.env.NOTIFY_SOCKET !== '';
  }

  private send(...args: string[]): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise((resolve) => {
      execFile('systemd-notify', [`--pid=${this.mainPid}`, ...args], { env: this.env, timeout: 5000 }, () => resolve());
    });
  }

  ready(status: string): Promise<void> {
    return this.send('--ready', `--status=${status}`);
  }

  status(status: string): Promise<void> {
    return this.send(`--status=${status}`);
  }

  stopping(): Promise<void> {
    return this.send('STOPPING=1');
  }

  /** Pings the watchdog at half the interval systemd asked for (WATCHDOG_USEC). */
  startWatchdog(): void {
    const usec = Number(this.env.WATCHDOG_USEC ?? 0);
    if (!this.enabled || !Number.isFinite(usec) || usec <= 0) return;
    const every = Math.max(100, Math.floor(usec / 2000));
    this.timer = setInterval(() => void this.send('WATCHDOG=1'), every);
    this.timer.unref();
    void this.send('WATCHDOG=1');
  }

  stopWatchdog(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
