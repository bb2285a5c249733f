import { SondeError } from '../../../base/src/errors/sonde-error.js';

/**
 * Codes of the install engine. POLICY_* refusals happen before anything is staged and leave the
 * probe untouched; the others say why an install was rolled back or failed. docs/errors.md.
 */
export const UPDATE_CODES = [
  'POLICY_INCOMPATIBLE_MODEL',
  'POLICY_PRODUCT_MISMATCH',
  'POLICY_REQUIRES_UNMET',
  'POLICY_NO_BASE_RELEASE',
  'POLICY_DOWNGRADE',
  'POLICY_SECURITY_DOWNGRADE',
  'POLICY_STALE_PACK',
  'POLICY_AGENT_TOO_OLD',
  'POLICY_DISK_SPACE',
  'POLICY_BUSY',
  'POLICY_MAINTENANCE_WINDOW',
  'ALREADY_INSTALLED',
  'SITE_VARS_MISSING',
  'MIGRATION_FAILED',
  'DB_VERSION_UNSUPPORTED',
  'CONFIG_VERSION_UNSUPPORTED',
  'CONFIG_INVALID',
  'RELEASE_INVALID',
  'SLOT_VERIFY_FAILED',
  'DISK_FULL',
  'APP_START_FAILED',
  'HOOK_FAILED',
  'HEALTH_CHECK_FAILED',
  'INSTALL_INTERRUPTED',
  'INSTALL_LOCKED',
  'ROLLBACK_UNAVAILABLE',
  'ROLLBACK_BELOW_SECURITY_FLOOR',
  'PROBE_NOT_INITIALISED',
  'NOT_A_PROBE_ROOT',
  'AGENT_PATHS_INVALID',
  // An agent updating itself (self-update.ts): a build that cannot run here, a trial the launcher
  // took back, a trial written while the agent runs without its launcher.
  'AGENT_BUILD_INVALID',
  'AGENT_UPDATE_ROLLED_BACK',
  'AGENT_UPDATE_NOT_STARTED',
  // Block slots and their bootloader (slots/, docs/slots.md).
  'SLOT_CONFIG_INVALID',
  'SLOT_DEVICE_INVALID',
  'SLOT_DEVICE_BUSY',
  'SLOT_DEVICE_TOO_SMALL',
  'BOOTLOADER_ENV_FAILED',
  'SYSTEM_BOOT_FAILED',
] as const;

export type UpdateCode = (typeof UPDATE_CODES)[number];

export class UpdateError extends SondeError<UpdateCode> {
  override readonly domain = 'update';
}
