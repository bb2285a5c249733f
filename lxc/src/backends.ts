import type { ProbeBackend } from './backend.js';
import { LabError } from './errors.js';
import type { LabPaths } from './lab-state.js';
import { LxcBackend } from './lxc-backend.js';

/** The engines the lab can run probes on. LXC is the default. */
export const BACKENDS = ['lxc', 'podman'] as const;
export type BackendKind = (typeof BACKENDS)[number];

export function isBackendKind(x: string): x is BackendKind {
  return (BACKENDS as readonly string[]).includes(x);
}

export function createBackend(kind: BackendKind, paths: LabPaths): ProbeBackend {
  switch (kind) {
    case 'lxc':
      return new LxcBackend(paths.lxc);
    case 'podman':
      throw new LabError('LAB_UNSUPPORTED', 'the podman backend is not built yet');
  }
}

/** Why this machine cannot run probes on `kind`, or null. */
export function backendUnsupported(kind: BackendKind): string | null {
  switch (kind) {
    case 'lxc':
      return LxcBackend.available();
    case 'podman':
      return 'the podman backend is not built yet';
  }
}
