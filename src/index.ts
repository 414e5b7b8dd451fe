/**
 * backupkit: hot, consistent backups of an application's data, from inside the application.
 *
 * @packageDocumentation
 */
export { Database } from './database.js';
export type { BackupOptions, CompressionOptions, DatabaseOptions, RestoreOptions } from './database.js';
export { registerDestination, registerSource } from './kinds.js';
export type { RestoreTarget, RestoreTargets, ScratchServers } from './kinds.js';
export { BackupOperation } from './backup/operation.js';
export type { BackupEvents, BackupResult } from './backup/operation.js';
export { RestoreOperation } from './restore/operation.js';
export type { RestoreEvents, RestoreResult } from './restore/operation.js';
export { Operation } from './operation.js';
export type { OperationEvents, SourceStats } from './operation.js';
export type { ProgressEvent, ProgressPhase } from './progress.js';
export { verifyBackup, VerifyOperation, VerificationError } from './restore/verify.js';
export type { CliConfig, CliMetricsConfig, CliScheduleConfig } from './cli/config.js';
export type { ScratchOptions, VerifiedSource, VerifyEvents, VerifyLevel, VerifyOptions, VerifyResult } from './restore/verify.js';
export { Schedule } from './schedule/index.js';
export type {
  ScheduleClock,
  ScheduleEvents,
  ScheduleHost,
  ScheduleOptions,
  ScheduleRun,
  ScheduleRunType,
  ScheduleSkipReason,
  ScheduleStatus,
  ScheduleTimer,
  ScheduleTrigger,
} from './schedule/index.js';
export type { MetricsRegistry } from './schedule/metrics.js';
export { listBackups } from './listing.js';
export type { BackupInfo, BackupProblem, BackupProblemCode, BackupTrust } from './listing.js';
export { prune } from './retention.js';
export type { PruneOptions, PruneResult, PruneWarning, RetentionPolicy } from './retention.js';
export type { CompressionAlgorithm } from './archive/compression.js';
export type { DecryptOptions, EncryptOptions } from './archive/encryption.js';
export type { SignOptions, VerifySignatureOptions } from './archive/signature.js';
export { BackupError } from './errors.js';
export type { BackupErrorCode, BackupErrorOptions } from './errors.js';
export { sqlite } from './sources/sqlite/index.js';
export type { SqliteSourceOptions, SqliteTarget } from './sources/sqlite/index.js';
export { postgres } from './sources/postgres/index.js';
export type { PostgresConnection, PostgresSourceOptions, PostgresTarget } from './sources/postgres/index.js';
export type { PostgresClientConfig, PostgresPool } from './sources/postgres/connection.js';
export { files } from './sources/files/index.js';
export type { FilesSourceOptions, FilesTarget } from './sources/files/index.js';
export { directory } from './destinations/directory/index.js';
export type { DirectoryOptions } from './destinations/directory/index.js';
export { memory } from './destinations/memory/index.js';
export { s3 } from './destinations/s3/index.js';
export { withRetry } from './destinations/retry.js';
export type { RetryInfo, RetryOptions } from './destinations/retry.js';
export type { S3AccessKey, S3ClientLike, S3Credentials, S3Options } from './destinations/s3/index.js';
export { gcs } from './destinations/s3/gcs.js';
export type { GcsOptions } from './destinations/s3/gcs.js';
export { azure, parseAzureUrl } from './destinations/azure/index.js';
export type { AzureOptions, AzureServiceClientLike } from './destinations/azure/index.js';
export { sftp, parseSftpUrl } from './destinations/sftp/index.js';
export type { SftpOptions } from './destinations/sftp/index.js';
export { ftp, parseFtpUrl } from './destinations/ftp/index.js';
export type { FtpOptions } from './destinations/ftp/index.js';
export type {
  ArchivedEntry,
  BackupType,
  BackupWarning,
  Destination,
  DestinationCapabilities,
  DestinationKind,
  Entry,
  Lease,
  LeaseOptions,
  PreviousState,
  ReadRange,
  EntryType,
  RestoreEntry,
  RestoreIntent,
  RestoreLayer,
  RestoreSink,
  Restorer,
  ScratchSpace,
  ScratchTarget,
  Snapshot,
  SnapshotChanges,
  SnapshotContext,
  Source,
  SourceMode,
  SourceKind,
  SourceKindCli,
  SourceKindCliOptions,
  StoredObject,
  Upload,
  VerifyCheck,
} from './types.js';
