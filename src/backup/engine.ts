import { pipeline } from 'node:stream/promises';
import { BackupError, abortError, asBackupError } from '../errors.js';
import { ChecksumCounter } from '../archive/checksum.js';
import { FORMAT_NAME, FORMAT_VERSION, HEADER_PATH, sourcePrefix, type ArchiveHeader } from '../archive/format.js';
import { ParallelGzip } from '../archive/gzip.js';
import { SIDECAR_EXTENSION, archiveName, timestampOf } from '../archive/names.js';
import type { BackupSidecar } from '../archive/sidecar.js';
import { ArchiveWriter } from '../archive/writer.js';
import { ProgressReporter } from '../progress.js';
import type { BackupWarning, Destination, Snapshot, Source } from '../types.js';
import { BACKUPKIT_VERSION } from '../version.js';
import { FanOut, type UploadTarget } from './fan-out.js';
import type { OperationContext, SourceStats } from '../operation.js';
import type { BackupEvents, BackupResult } from './operation.js';

export interface BackupPlan {
  readonly sources: readonly Source[];
  readonly destinations: readonly Destination[];
  readonly level: number;
}

interface OpenSnapshot {
  readonly source: Source;
  readonly snapshot: Snapshot;
}

/**
 * One backup from start to finish: snapshots first (databases before file trees), then one
 * archive stream written to every destination, then commits. On any failure every upload is
 * aborted and every committed copy removed.
 */
export async function runBackup(plan: BackupPlan, run: OperationContext<BackupEvents>): Promise<BackupResult> {
  const startedAt = Date.now();
  const createdAt = new Date(startedAt);
  const { signal } = run;
  const checkAborted = () => {
    if (signal.aborted) throw abortError(signal);
  };
  const warnings: BackupWarning[] = [];
  const progress = new ProgressReporter('backup', 'snapshot', (event) => run.emit('progress', event));
  const snapshots: OpenSnapshot[] = [];
  const uploads: UploadTarget[] = [];
  const committed: Array<{ destination: Destination; name: string }> = [];
  let writer: ArchiveWriter | undefined;
  let warnedPath: string | undefined;

  try {
    checkAborted();
    const name = await chooseName(plan.destinations, createdAt);
    run.emit('start', { name, createdAt, sources: plan.sources.map(({ name: source, kind }) => ({ name: source, kind })) });

    const ordered = [...plan.sources.filter((s) => s.role === 'database'), ...plan.sources.filter((s) => s.role !== 'database')];
    for (const source of ordered) {
      checkAborted();
      progress.enter('snapshot', source.name);
      const warn = (warning: Omit<BackupWarning, 'source'>) => {
        const full = { ...warning, source: source.name };
        warnings.push(full);
        warnedPath = warning.path;
        run.emit('warning', full);
      };
      const snapshot = await source.open({ signal, warn }).catch((cause: unknown) => {
        throw asBackupError(cause, 'SOURCE_FAILED', `Opening source "${source.name}" failed`);
      });
      snapshots.push({ source, snapshot });
    }
    const estimates = await Promise.all(
      snapshots.map(({ source, snapshot }) =>
        snapshot.estimate().catch((cause: unknown) => {
          throw asBackupError(cause, 'SOURCE_FAILED', `Sizing source "${source.name}" failed`);
        }),
      ),
    );
    progress.setTotals(
      estimates.reduce((sum, e) => sum + e.bytes, 0),
      estimates.reduce((sum, e) => sum + e.items, 0),
    );
    const header: ArchiveHeader = {
      format: FORMAT_NAME,
      formatVersion: FORMAT_VERSION,
      backupkitVersion: BACKUPKIT_VERSION,
      name,
      createdAt: createdAt.toISOString(),
      compression: { algorithm: 'gzip', level: plan.level },
      sources: snapshots.map(({ source }, i) => ({
        name: source.name,
        kind: source.kind,
        estimatedBytes: estimates[i]?.bytes ?? 0,
        estimatedItems: estimates[i]?.items ?? 0,
      })),
    };

    for (const destination of plan.destinations) {
      checkAborted();
      const upload = await destination.create(name).catch((cause: unknown) => {
        throw asBackupError(cause, 'DESTINATION_FAILED', `Creating ${name} on ${destination.description} failed`);
      });
      uploads.push({ destination, upload });
    }

    const archiveWriter = await ArchiveWriter.create();
    writer = archiveWriter;
    const checksum = new ChecksumCounter();
    const piping = pipeline(archiveWriter.tar, new ParallelGzip(plan.level), checksum, new FanOut(uploads), { signal });
    piping.catch(() => {}); // settled below
    const sources: SourceStats[] = [];
    const producing = (async () => {
      await archiveWriter.addBuffer(HEADER_PATH, Buffer.from(`${JSON.stringify(header, null, 2)}\n`), createdAt);
      for (const { source, snapshot } of snapshots) {
        run.emit('source-start', { name: source.name, kind: source.kind });
        progress.enter('archive', source.name);
        let bytes = 0;
        let items = 0;
        try {
          for await (const entry of snapshot.entries()) {
            checkAborted();
            warnedPath = undefined;
            const prefix = sourcePrefix(source.name);
            const { sizeMismatch } = await archiveWriter.add(
              { ...entry, path: entry.path === '' ? prefix : `${prefix}/${entry.path}`, body: entry.body?.(), changed: () => warnedPath === entry.path },
              (n) => {
                bytes += n;
                progress.addBytes(n);
              },
            );
            if (sizeMismatch && warnedPath !== entry.path) {
              const warning = { code: 'SIZE_MISMATCH', source: source.name, path: entry.path, message: `${entry.path} changed size while it was read; stored cut or padded to ${entry.size} bytes` } as const;
              warnings.push(warning);
              run.emit('warning', warning);
            }
            items += 1;
            progress.addItem();
          }
        } catch (cause) {
          if (signal.aborted) throw abortError(signal);
          throw asBackupError(cause, 'SOURCE_FAILED', `Reading source "${source.name}" failed`);
        }
        const stats = { name: source.name, kind: source.kind, bytes, items };
        sources.push(stats);
        run.emit('source-end', stats);
      }
      progress.enter('commit');
      await archiveWriter.finish({ sources, warnings: warnings.length });
    })();
    producing.catch((error: Error) => archiveWriter.dispose(error));
    const [produced, piped] = await Promise.allSettled([producing, piping]);
    if (produced.status === 'rejected' || piped.status === 'rejected') {
      throw pickFailure(signal, produced, piped);
    }

    for (const { destination, upload } of uploads) {
      checkAborted();
      await upload.commit();
      committed.push({ destination, name });
    }
    const result: BackupResult = {
      name,
      size: checksum.size,
      sha256: checksum.digest(),
      createdAt,
      durationMs: Date.now() - startedAt,
      sources,
      destinations: plan.destinations.map((d) => d.description),
      warnings,
    };
    const sidecar: BackupSidecar = { ...header, size: result.size, sha256: result.sha256, encrypted: false, sourceStats: sources, warnings: warnings.length };
    for (const { destination } of uploads) {
      await writeSidecar(destination, `${name}${SIDECAR_EXTENSION}`, sidecar);
      committed.push({ destination, name: `${name}${SIDECAR_EXTENSION}` });
    }
    progress.report(true);
    return result;
  } catch (error) {
    await Promise.allSettled(uploads.map(({ upload }) => upload.abort()));
    await Promise.allSettled(committed.map(({ destination, name }) => destination.remove(name)));
    throw signal.aborted ? abortError(signal) : asBackupError(error, 'SOURCE_FAILED', 'The backup failed');
  } finally {
    progress.stop();
    await writer?.dispose();
    await Promise.allSettled(snapshots.map(({ snapshot }) => snapshot.close()));
  }
}

/**
 * A failure in the archive stream surfaces twice: where it happened and, as "stream destroyed", in
 * the other half. Report the one that says what went wrong.
 */
function pickFailure(signal: AbortSignal, ...outcomes: PromiseSettledResult<unknown>[]): BackupError {
  if (signal.aborted) return abortError(signal);
  const reasons = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
  const meaningful = reasons.find((reason) => reason instanceof BackupError) ?? reasons[0];
  return asBackupError(meaningful, 'DESTINATION_FAILED', 'Writing the archive failed');
}

/** The UTC start time, with a sequence number if a backup of the same second exists already. */
async function chooseName(destinations: readonly Destination[], createdAt: Date): Promise<string> {
  const taken = new Set<string>();
  for (const destination of destinations) {
    try {
      for await (const object of destination.list(timestampOf(createdAt))) taken.add(object.name);
    } catch (cause) {
      throw asBackupError(cause, 'DESTINATION_FAILED', `Listing ${destination.description} failed`);
    }
  }
  for (let sequence = 0; ; sequence += 1) {
    const name = archiveName(createdAt, sequence);
    if (!taken.has(name)) return name;
  }
}

async function writeSidecar(destination: Destination, name: string, sidecar: BackupSidecar): Promise<void> {
  const upload = await destination.create(name);
  try {
    upload.stream.end(`${JSON.stringify(sidecar, null, 2)}\n`);
    await new Promise<void>((resolve, reject) => {
      upload.stream.once('finish', resolve).once('error', reject);
    });
    await upload.commit();
  } catch (cause) {
    await upload.abort();
    throw new BackupError('DESTINATION_FAILED', `Writing ${name} to ${destination.description} failed`, { cause });
  }
}
