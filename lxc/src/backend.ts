import type { ProbeInit } from '../../images/src/lab/probe-image.js';

/**
 * What the lab needs from a container engine. LXC (lxc-backend.ts) is the default; podman through
 * testcontainers (podman-backend.ts) is the second. The lab never calls an engine directly.
 */
export interface Mount {
  readonly host: string;
  /** Inside the probe, absolute. */
  readonly target: string;
  readonly readOnly: boolean;
}

export interface ProbeSpec {
  readonly name: string;
  /** The shared read-only lower layer. */
  readonly lower: string;
  /** The probe's writable layer (its files appear at / in the probe). */
  readonly upper: string;
  /** The probe's address on the lab bridge (a /24), and the bridge. */
  readonly ip: string;
  readonly bridge: string;
  /** The host end of the probe's veth: `ip link set <veth> down` pulls its cable. */
  readonly veth: string;
  readonly mounts: readonly Mount[];
  /** A log of the probe's console, on the host. */
  readonly consoleLog: string;
  /** PID 1: busybox init (the default) or systemd (LXC only). */
  readonly init?: ProbeInit;
  /** QEMU only: the firmware ROM booted instead of the BIOS (U-Boot's, docs/slots.md). */
  readonly bios?: string;
}

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export type ProbeRunState = 'running' | 'stopped' | 'missing';

export interface ProbeBackend {
  readonly kind: 'lxc' | 'podman' | 'qemu';
  /** Writes the probe's definition; starts nothing. */
  create(spec: ProbeSpec): Promise<void>;
  start(name: string): Promise<void>;
  /** `kill`: SIGKILL to everything in the probe at once (a power cut), else a clean halt. */
  stop(name: string, opts: { kill: boolean }): Promise<void>;
  /** Stops (killing) and removes the probe's definition; its upper layer stays with the caller. */
  destroy(name: string): Promise<void>;
  state(name: string): Promise<ProbeRunState>;
  /** Every probe this engine holds for the lab, listed or not (a builder an interrupted `up` left). */
  known(): Promise<string[]>;
  exec(name: string, argv: readonly string[], opts?: { input?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number }): Promise<ExecResult>;
  /** argv of a command that opens an interactive shell in the probe. */
  shellCommand(name: string): readonly string[];
  /** For a probe whose PID 1 is systemd: resolves once systemd says it is up. */
  waitBooted?(name: string, timeoutMs?: number): Promise<void>;
}

/** The environment commands run with inside a probe (the host's is never passed through). */
export const PROBE_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
});
