import { join } from 'node:path';
import type { ProbeBackend } from './backend.js';
import type { LabPaths } from './lab-state.js';
import { LxcBackend } from './lxc-backend.js';
import { PodmanBackend } from './podman-backend.js';
import { QemuBackend } from './vm/qemu-backend.js';

/** The engines the lab can run probes on. LXC is the default; `qemu` is `sonde lab up --vm` (docs/lab.md). */
export const BACKENDS = ['lxc', 'podman', 'qemu'] as const;
export type BackendKind = (typeof BACKENDS)[number];

export function isBackendKind(x: string): x is BackendKind {
  return (BACKENDS as readonly string[]).includes(x);
}

export function createBackend(kind: BackendKind, paths: LabPaths): ProbeBackend {
  switch (kind) {
    case 'lxc':
      return new LxcBackend(paths.lxc);
    case 'podman':
      // The lab's own engine: service, storage and probe records under <lab>/podman/.
      return new PodmanBackend(join(paths.dir, 'podman'));
    case 'qemu':
      return new QemuBackend(join(paths.dir, 'qemu'));
  }
}

/** Why this machine cannot run probes on `kind`, or null. */
export function backendUnsupported(kind: BackendKind): string | null {
  switch (kind) {
    case 'lxc':
      return LxcBackend.available();
    case 'podman':
      return PodmanBackend.available();
    case 'qemu':
      return QemuBackend.available();
  }
}
