/** The FTP drop's public surface (docs/ftp-drop.md). */
export { DropInbox, type DropInboxOptions } from './inbox.js';
export { installWithEngine } from './engine-install.js';
export type { DropEvent, DropInstall, DropInstallResult, DropStatus, IncompleteUpload, WaitingReason, WaitingUpload } from './drop-types.js';
export { DROP_OUTCOMES, dropReceiptSchema, readReceipts, RECEIPT_SUFFIX, type DropOutcome, type DropReceipt } from './receipt.js';
export { DEFAULT_RETENTION, type RetentionPolicy } from './retention.js';
export { measurePack, type PackExtent } from '../../../pack/src/index.js';
export { openForWriting, type WatchedFile } from './open-writers.js';
export { DropError, DROP_CODES, type DropCode } from './errors.js';
