import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError, abortError, asBackupError } from '../errors.js';
import { ChecksumCounter } from '../archive/checksum.js';
import { FORMAT_NAME, FORMAT_VERSION, HEADER_PATH, META_DIR, PARTIAL_SOURCES, sourcePrefix, type ArchiveHeader } from '../archive/format.js';
import { compressionExtension, compressor, Rechunk, type Compression } from '../archive/compression.js';
import { encryptor, type Encryption } from '../archive/encryption.js';
import { ENCRYPTED_EXTENSION, SIDECAR_EXTENSION } from '../archive/names.js';
import type { Signer } from '../archive/signature.js';
import type { BackupSidecar, StoredState } from '../archive/sidecar.js';
import { ArchiveWriter } from '../archive/writer.js';
import { ProgressReporter } from '../progress.js';
import { prune, type RetentionPolicy } from '../retention.js';
import type { BackupType } from '../archive/format.js';
import type { BackupInfo } from '../listing.js';
import type { BackupWarning, Destination, Snapshot, SnapshotChanges, Source } from '../types.js';
import { redactText } from '../util/redact.js';
import { AbortRace, closed, waitFor } from '../util/streams.js';
import { BACKUPKIT_VERSION } from '../version.js';
import { startChain, type ChainLink, type ChainStart } from './chain.js';
import { FanOut, type UploadTarget } from './fan-out.js';
import { claimName, type NameClaim } from './name-claim.js';
import { stateName, StateWriter } from './state.js';
import type { OperationContext, SourceStats } from '../operation.js';
import type { BackupEvents, BackupResult } from './operation.js';

export interface BackupPlan {
  readonly sources: readonly Source[];
  readonly destinations: readonly Destination[];
  readonly compression: Compression;
  readonly encryption: Encryption | undefined;
  readonly signer: Signer | undefined;
  readonly retention: RetentionPolicy | undefined;
  /** What was asked for; an incremental with nothing to build on is a full. */
  readonly type: BackupType;
  /** Throws unless the backup may still commit (its lease is still its own): awaited right before anything becomes visible. */
  readonly fence?: (() => Promise<void>) | undefined;
}

interface OpenSnapshot {
  readonly source: Source;
  readonly snapshot: Snapshot;
  /** What the archive holds of it: always `full` outside an incremental. */
  changes: SnapshotChanges;
}

const HELD_IN_FULL: SnapshotChanges = { mode: 'full', unchanged: false };

/**
 * One backup from start to finish: snapshots first (databases before file trees), then one
 * archive stream written to every destination, then commits. On any failure every upload is
 * aborted and every committed copy removed.
 */
export async function runBackup(plan: BackupPlan, run: OperationContext<BackupEvents>): Promise<BackupResult> {
  const backup = new Backup(plan, run);
  try {
    return await backup.run();
  } catch (error) {
    const cleanup = await backup.rollBack();
    if (run.signal.aborted) throw abortError(run.signal);
    const failure = asBackupError(error, 'SOURCE_FAILED', 'The backup failed');
    if (cleanup.length === 0) throw failure;
    // Say what became of every destination, not only of the one that failed.
    throw new BackupError(failure.code, `${failure.message} (${cleanup.join('; ')})`, { cause: failure.cause ?? failure, hint: failure.hint });
  } finally {
    await backup.release();
  }
}

/** The state of one backup, so that every phase and the roll-back see the same facts. */
class Backup {
  readonly #startedAt = Date.now();
  readonly #createdAt = new Date(this.#startedAt);
  readonly #progress: ProgressReporter;
  readonly #warnings: BackupWarning[] = [];
  readonly #snapshots: OpenSnapshot[] = [];
  readonly #uploads: UploadTarget[] = [];
  readonly #stateUploads: UploadTarget[] = [];
  readonly #committed: Array<{ destination: Destination; name: string }> = [];
  #writer: ArchiveWriter | undefined;
  #nameClaim: NameClaim | undefined;
  #chain: ChainStart | undefined;
  #states: StateWriter | undefined;
  #storedState: StoredState | undefined;
  /** The path of the last warning, so an entry's own warning is not repeated as SIZE_MISMATCH. */
  #warnedPath: string | undefined;

  constructor(
    private readonly plan: BackupPlan,
    private readonly events: OperationContext<BackupEvents>,
  ) {
    this.#progress = new ProgressReporter('backup', 'snapshot', (event) => events.emit('progress', event));
  }

  async run(): Promise<BackupResult> {
    this.#checkAborted();
    const extension = `.tar${compressionExtension(this.plan.compression.algorithm)}${this.plan.encryption ? ENCRYPTED_EXTENSION : ''}`;
    this.#nameClaim = await claimName(this.plan.destinations, this.#createdAt, extension);
    const { name } = this.#nameClaim;
    const { sources } = this.plan;
    this.events.emit('start', { name, createdAt: this.#createdAt, sources: sources.map((s) => ({ name: s.name, kind: s.kind })) });
    const chain = (this.#chain = await startChain(this.plan.type, this.plan.destinations[0] as Destination, sources, this.plan.encryption, (w) => this.#warn(w), this.events.signal));
    const { link } = chain;
    await this.#openSnapshots(chain);
    if (chain.previous && this.#snapshots.every(({ changes }) => changes.unchanged)) return this.#unchanged(chain.previous);
    const header = await this.#header(name, link);
    await this.#createUploads(name, this.#uploads);
    const { stats, size, sha256 } = await this.#writeArchive(header);
    const state = this.#storedState;
    const encrypted = this.plan.encryption !== undefined;
    await this.#commit(name, { ...header, size, sha256, encrypted, sourceStats: stats, warnings: this.#warnings.length, ...(state ? { state } : {}) });
    const pruned = await this.#applyRetention();
    this.#progress.complete();
    return {
      pruned,
      name,
      size,
      sha256,
      type: link.type,
      base: link.base,
      previous: link.previous,
      createdAt: this.#createdAt,
      durationMs: Date.now() - this.#startedAt,
      sources: stats,
      destinations: this.plan.destinations.map((d) => d.description),
      warnings: this.#warnings,
      signedBy: this.plan.signer?.fingerprint,
    };
  }

  /**
   * An incremental where no source changed writes nothing: the backup it would have built on still
   * stands, and the result names it.
   */
  #unchanged(standing: BackupInfo): BackupResult {
    this.#progress.complete();
    return {
      name: standing.name,
      size: standing.size,
      sha256: standing.sha256 ?? '',
      type: standing.type ?? 'full',
      base: standing.base,
      previous: standing.previous,
      unchanged: true,
      createdAt: standing.createdAt,
      durationMs: Date.now() - this.#startedAt,
      sources: this.#snapshots.map(({ source }) => ({ name: source.name, kind: source.kind, bytes: 0, items: 0 })),
      destinations: this.plan.destinations.map((d) => d.description),
      pruned: [],
      warnings: this.#warnings,
      signedBy: standing.signedBy,
    };
  }

  /**
   * Stores what the sources saved for the next incremental as `<name>.state` beside the archive,
   * on every destination; nothing when no source saves a state.
   */
  async #writeState(name: string): Promise<StoredState | undefined> {
    const states = (this.#states = await StateWriter.create());
    for (const { source, snapshot } of this.#snapshots) {
      this.#checkAborted();
      await states.add(source.name, snapshot, this.events.signal).catch((cause: unknown) => {
        throw asBackupError(cause, 'SOURCE_FAILED', `Saving the state of source "${source.name}" failed`);
      });
    }
    if (states.empty) return undefined;
    await this.#createUploads(stateName(name), this.#stateUploads);
    return states.write(this.#stateUploads, this.plan.compression, this.plan.encryption, this.events.signal, this.plan.fence);
  }

  /** A failed prune does not fail the backup, which is safely stored by then: it is a warning. */
  async #applyRetention(): Promise<Array<{ destination: string; removed: string[] }>> {
    const { retention, destinations } = this.plan;
    if (!retention) return [];
    const pruned = [];
    for (const destination of destinations) {
      try {
        const { removed } = await prune(destination, retention);
        pruned.push({ destination: destination.description, removed: removed.map((b) => b.name) });
      } catch (cause) {
        this.#warn({ code: 'PRUNE_FAILED', message: `Applying the retention policy to ${destination.description} failed: ${(cause as Error).message}` });
      }
    }
    return pruned;
  }

  /** Aborts every upload and removes every copy already committed; says how each went. */
  async rollBack(): Promise<string[]> {
    const outcomes = await Promise.all(
      this.#uploads.map(async ({ destination, upload }) => {
        const copies = this.#committed.filter((c) => c.destination === destination);
        const stateUploads = this.#stateUploads.filter((u) => u.destination === destination).map((u) => u.upload.abort());
        const results = await Promise.allSettled([upload.abort(), ...stateUploads, ...copies.map(({ name }) => destination.remove(name))]);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        return failed
          ? `${destination.description}: cleaning up failed, remove ${copies.map((c) => c.name).join(', ') || 'the partial upload'} by hand: ${(failed.reason as Error).message}`
          : `${destination.description}: nothing left`;
      }),
    );
    return outcomes;
  }

  async release(): Promise<void> {
    this.#progress.stop();
    await this.#writer?.dispose();
    await Promise.allSettled(this.#snapshots.map(({ snapshot }) => snapshot.close()));
    await Promise.allSettled([this.#states?.dispose(), this.#chain?.states?.dispose()]);
    await this.#nameClaim?.release(); // after the commit or the roll-back, never before
  }

  /**
   * Opens every source; in an incremental, each one given what it saved last time says right
   * away what its part of the archive will hold.
   */
  async #openSnapshots({ states }: ChainStart): Promise<void> {
    const { sources } = this.plan;
    const archive = this.#nameClaim!.name;
    const ordered = [...sources.filter((s) => s.role === 'database'), ...sources.filter((s) => s.role !== 'database')];
    for (const source of ordered) {
      this.#checkAborted();
      this.#progress.enter('snapshot'); // names no source: its source-start comes with its data
      const warn = (warning: Omit<BackupWarning, 'source'>) => this.#warn({ ...warning, source: source.name });
      const previous = states?.bySource.get(source.name);
      const snapshot = await source.open({ signal: this.events.signal, warn, archive, ...(previous ? { previous } : {}) }).catch((cause: unknown) => {
        throw asBackupError(cause, 'SOURCE_FAILED', `Opening source "${source.name}" failed`);
      });
      const opened: OpenSnapshot = { source, snapshot, changes: HELD_IN_FULL };
      this.#snapshots.push(opened); // closed on failure from here on
      if (previous && snapshot.changes) {
        opened.changes = await snapshot.changes().catch((cause: unknown) => {
          throw asBackupError(cause, 'SOURCE_FAILED', `Comparing source "${source.name}" with ${previous.archive} failed`);
        });
      }
    }
  }

  /** Sizes every snapshot, for progress and for the header. */
  async #header(name: string, link: ChainLink): Promise<ArchiveHeader> {
    const estimates = await Promise.all(
      this.#snapshots.map(({ source, snapshot }) =>
        snapshot.estimate().catch((cause: unknown) => {
          throw asBackupError(cause, 'SOURCE_FAILED', `Sizing source "${source.name}" failed`);
        }),
      ),
    );
    this.#progress.setTotals(
      estimates.reduce((sum, e) => sum + e.bytes, 0),
      estimates.reduce((sum, e) => sum + e.items, 0),
    );
    const partial = this.#snapshots.some(({ changes }) => changes.mode === 'changes');
    return {
      format: FORMAT_NAME,
      formatVersion: partial ? PARTIAL_SOURCES : FORMAT_VERSION,
      backupkitVersion: BACKUPKIT_VERSION,
      name,
      createdAt: this.#createdAt.toISOString(),
      compression: this.plan.compression,
      ...(this.plan.encryption
        ? { encryption: { method: 'openpgp', passphrase: this.plan.encryption.passwords.length > 0, recipients: this.plan.encryption.fingerprints } }
        : {}),
      ...(this.plan.signer ? { signature: { method: 'openpgp', fingerprint: this.plan.signer.fingerprint } } : {}),
      sources: this.#snapshots.map(({ source, changes }, i) => ({
        name: source.name,
        kind: source.kind,
        estimatedBytes: estimates[i]?.bytes ?? 0,
        estimatedItems: estimates[i]?.items ?? 0,
        ...(link.type === 'incremental' ? { mode: changes.mode } : {}),
      })),
      ...link,
    };
  }

  async #createUploads(name: string, into: UploadTarget[]): Promise<void> {
    for (const destination of this.plan.destinations) {
      this.#checkAborted();
      const upload = await destination.create(name).catch((cause: unknown) => {
        throw asBackupError(cause, 'DESTINATION_FAILED', `Creating ${name} on ${destination.description} failed`);
      });
      into.push({ destination, upload });
    }
  }

  /** Streams the archive once, through compression and checksum, to every upload. */
  async #writeArchive(header: ArchiveHeader): Promise<{ stats: SourceStats[]; size: number; sha256: string }> {
    const writer = (this.#writer = await ArchiveWriter.create(this.events.signal));
    const checksum = new ChecksumCounter();
    const { compression, encryption } = this.plan;
    const compressing = compressor(compression);
    const encrypting = encryption ? [new Rechunk(), encryptor(encryption)] : [];
    const stages = [writer.tar as unknown as Readable, compressing, ...encrypting, checksum, new FanOut(this.#uploads, this.events.signal, this.plan.fence)];
    const piping = pipeline(stages, { signal: this.events.signal });
    piping.catch(() => {}); // settled below
    const producing = this.#produce(writer, header);
    producing.catch((error: Error) => writer.dispose(error));
    const [produced, piped] = await Promise.allSettled([producing, piping]);
    if (produced.status === 'rejected' || piped.status === 'rejected') {
      // Node 20's pipeline settles on the first error without waiting for the stages it destroys:
      // the compressor closes only once its blocks on the libuv pool have settled, the OpenPGP
      // stage once its thread has exited.
      await Promise.all([compressing, ...encrypting].map((stage) => closed(stage)));
      throw this.#pickFailure(piped, produced);
    }
    return { stats: produced.value, size: checksum.size, sha256: checksum.digest() };
  }

  /** Writes the header, every source's entries and the manifest into the tar stream. */
  async #produce(writer: ArchiveWriter, header: ArchiveHeader): Promise<SourceStats[]> {
    const stats: SourceStats[] = [];
    await writer.addBuffer(HEADER_PATH, Buffer.from(`${JSON.stringify(header, null, 2)}\n`), this.#createdAt);
    for (const [index, { source, snapshot }] of this.#snapshots.entries()) {
      const estimatedBytes = header.sources[index]?.estimatedBytes ?? 0;
      this.events.emit('source-start', { name: source.name, kind: source.kind, estimatedBytes });
      this.#progress.enter('archive', source.name, { bytes: estimatedBytes, items: header.sources[index]?.estimatedItems ?? 0 });
      const sourceStats = await this.#archiveSource(writer, source, snapshot);
      this.#progress.endSource(sourceStats);
      stats.push(sourceStats);
      this.events.emit('source-end', sourceStats);
    }
    this.#progress.enter('commit');
    // The state is stored before the archive's stream ends: where an object shows when its upload
    // ends (S3), the archive then waits the shortest time for its sidecar.
    this.#storedState = await this.#writeState(header.name);
    await writer.finish({ sources: stats, warnings: this.#warnings.length }, this.plan.signer);
    return stats;
  }

  async #archiveSource(writer: ArchiveWriter, source: Source, snapshot: Snapshot): Promise<SourceStats> {
    const prefix = sourcePrefix(source.name);
    const metaPrefix = `${META_DIR}/${source.name}`;
    let bytes = 0;
    let items = 0;
    // Read by hand, not with for-await: a source waiting for its next entry must not hold up a
    // cancel; it is told to stop, and not waited for (close() follows).
    const entries = snapshot.entries()[Symbol.asyncIterator]();
    const cancel = new AbortRace(this.events.signal);
    let reading = false;
    try {
      for (;;) {
        reading = true;
        const next = await cancel.run(entries.next());
        reading = false;
        if (next.done) break;
        const entry = next.value;
        this.#checkAborted();
        this.#warnedPath = undefined;
        const { sha256, sizeMismatch } = await writer.add(
          { ...entry, path: archivePath(entry.meta ? metaPrefix : prefix, entry.path), body: entry.body?.(), changed: () => this.#warnedPath === entry.path },
          (n) => {
            bytes += n;
            this.#progress.addSourceBytes(n);
            this.#progress.addBytes(n);
          },
        );
        entry.archived?.(sha256);
        if (sizeMismatch && this.#warnedPath !== entry.path) {
          const message = `${entry.path} changed size while it was read; stored cut or padded to ${entry.size} bytes`;
          this.#warn({ code: 'SIZE_MISMATCH', source: source.name, path: entry.path, message });
        }
        items += 1;
        this.#progress.addItem();
      }
    } catch (cause) {
      this.#checkAborted();
      throw asBackupError(cause, 'SOURCE_FAILED', `Reading source "${source.name}" failed`);
    } finally {
      cancel.dispose();
      const closing = Promise.resolve(entries.return?.()).catch(() => {});
      if (!reading) await closing;
    }
    return { name: source.name, kind: source.kind, bytes, items };
  }

  /**
   * Makes every upload visible, then writes the sidecars that make listing cheap. Destinations
   * whose objects are visible already (no `deferredCommit`) confirm first: if one of them fails,
   * the deferred ones are aborted before their copy ever appeared.
   */
  async #commit(name: string, sidecar: BackupSidecar): Promise<void> {
    await this.plan.fence?.();
    for (const { destination, upload } of visibleFirst(this.#uploads)) {
      this.#checkAborted();
      await upload.commit();
      this.#committed.push({ destination, name });
    }
    // The state before the sidecar, which vouches for both.
    for (const { destination, upload } of visibleFirst(this.#stateUploads)) {
      this.#checkAborted();
      await upload.commit();
      this.#committed.push({ destination, name: stateName(name) });
    }
    for (const { destination } of this.#uploads) {
      this.#checkAborted();
      const sidecarName = `${name}${SIDECAR_EXTENSION}`;
      await writeSidecar(destination, sidecarName, sidecar, this.events.signal);
      this.#committed.push({ destination, name: sidecarName });
    }
    // A cancel that landed during the last commit still wins: the copies are rolled back. From
    // here on the backup is stored and reported as done.
    this.#checkAborted();
  }

  #warn(given: BackupWarning): void {
    // A warning may quote a failure that quotes a connection string.
    const warning = { ...given, message: redactText(given.message) };
    this.#warnings.push(warning);
    this.#warnedPath = warning.path;
    this.events.emit('warning', warning);
  }

  #checkAborted(): void {
    if (this.events.signal.aborted) throw abortError(this.events.signal);
  }

  /**
   * A failure in the archive stream surfaces twice: where it happened and, as "stream destroyed",
   * in the other half. Report the one that says what went wrong.
   */
  #pickFailure(...outcomes: PromiseSettledResult<unknown>[]): BackupError {
    this.#checkAborted();
    const reasons = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    const meaningful = reasons.find((reason) => reason instanceof BackupError) ?? reasons[0];
    return asBackupError(meaningful, 'DESTINATION_FAILED', 'Writing the archive failed');
  }
}

/** Uploads whose objects are visible already (no `deferredCommit`) confirm first. */
function visibleFirst(uploads: readonly UploadTarget[]): UploadTarget[] {
  return uploads.toSorted((a, b) => Number(a.destination.capabilities.deferredCommit) - Number(b.destination.capabilities.deferredCommit));
}

function archivePath(prefix: string, path: string): string {
  return path === '' ? prefix : `${prefix}/${path}`;
}

async function writeSidecar(destination: Destination, name: string, sidecar: BackupSidecar, signal: AbortSignal): Promise<void> {
  const upload = await destination.create(name);
  try {
    const flushed = waitFor(upload.stream, 'finish', { signal });
    upload.stream.end(`${JSON.stringify(sidecar, null, 2)}\n`);
    await flushed;
    await upload.commit();
  } catch (cause) {
    await upload.abort();
    throw new BackupError('DESTINATION_FAILED', `Writing ${name} to ${destination.description} failed`, { cause });
  }
}
