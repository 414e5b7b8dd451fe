import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BackupError, abortError, asBackupError } from '../errors.js';
import { HEADER_PATH, MANIFEST_PATH, SOURCES_DIR, parseHeader, readHeaderBytes, sourcePrefix, type ArchiveHeader } from '../archive/format.js';
import type { DecryptOptions } from '../archive/encryption.js';
import { openArchive, type ArchiveReader } from '../archive/reader.js';
import { SIGNATURE_PATH, SignatureCheck, type VerifySignatureOptions } from '../archive/signature.js';
import type { Header } from 'tar-stream';
import { listArchives } from '../catalog.js';
import type { OperationContext, SourceStats } from '../operation.js';
import { ProgressReporter } from '../progress.js';
import type { Destination, EntryType, RestoreSink, Restorer, ScratchSpace, ScratchTarget, VerifyCheck } from '../types.js';
import { ensureSpace, isNotFound } from '../util/fs.js';
import { redact } from '../util/redact.js';
import { cooperative } from '../util/yield.js';
import { RestoreJournal } from './journal.js';
import { ManifestCheck } from './manifest-check.js';
import type { RestoreEvents, RestoreResult } from './operation.js';
import { checkEntryPath } from './path-guard.js';

const RESTORABLE_TYPES: ReadonlySet<string> = new Set<EntryType>(['file', 'directory', 'symlink']);

export interface RestorePlan {
  readonly from: Destination;
  readonly backup: string | undefined;
  /** Each source to restore, by name, and where. */
  readonly targets: Readonly<Record<string, unknown>>;
  /** Instead of `targets`: every source into a throwaway target made here. */
  readonly scratch?: ScratchSpace;
  readonly restorers: ReadonlyMap<string, Restorer>;
  readonly decrypt: DecryptOptions | undefined;
  /** Keys one of which must have signed the archive; checked before any restorer prepares or commits. */
  readonly verifySignature?: VerifySignatureOptions | undefined;
  /** After the commit, re-read every target and compare it with the archive (`verifyBackup`). */
  readonly checkTargets?: boolean;
  /** What progress events say is running; default `restore`. */
  readonly operation?: 'restore' | 'verify';
}

/** A finished restore, with what only backupkit's own callers need. */
export interface RestoreRun {
  readonly result: RestoreResult;
  /** The throwaway targets made, by source name: the caller removes them. */
  readonly scratch: ReadonlyMap<string, ScratchTarget>;
  /** The checks of each target, by source name, when `checkTargets` was set. */
  readonly checks: ReadonlyMap<string, VerifyCheck[]>;
  /** Every source of the archive, restored or not, with the bytes and entries read and verified. */
  readonly archived: readonly SourceStats[];
}

interface SourceRestore {
  readonly name: string;
  readonly kind: string;
  readonly target: unknown;
  readonly sink: RestoreSink;
}

/** Bytes and entries read of one source of the archive, restored or not. */
type Counted = { -readonly [K in keyof SourceStats]: SourceStats[K] };

/**
 * Reads one archive, checks every target before writing anything, streams each source's entries
 * into its restorer's staging copy while hashing them, verifies the manifest, and only then
 * commits. Any failure aborts every restorer: targets are left exactly as they were.
 */
export async function runRestore(plan: RestorePlan, run: OperationContext<RestoreEvents>): Promise<RestoreRun> {
  const startedAt = Date.now();
  const { signal } = run;
  const progress = new ProgressReporter(plan.operation ?? 'restore', 'read', (event) => run.emit('progress', event));
  const manifest = new ManifestCheck();
  const restores = new Map<string, SourceRestore>();
  const scratch = new Map<string, ScratchTarget>();
  const checks = new Map<string, VerifyCheck[]>();
  let reader: ArchiveReader | undefined;
  let signature: SignatureCheck | undefined;
  /** The journal this restore wrote, while its commits run. */
  let committing: RestoreJournal | undefined;
  const yieldNow = cooperative();

  try {
    signature = await SignatureCheck.create(plan.verifySignature);
    const { name, size } = await pickBackup(plan.from, plan.backup);
    progress.setTotals(size, 0);
    const input = await plan.from.open(name);
    reader = await openArchive(input, plan.from.description, signal, (n) => progress.addBytes(n), plan.decrypt);
    const { entries } = reader;

    const first = await entries.next();
    if (first.done || first.value.header.name !== HEADER_PATH) {
      throw new BackupError('CORRUPT_ARCHIVE', `${name} does not start with ${HEADER_PATH}; it is not a backupkit archive`);
    }
    const headerBytes = await readHeaderBytes(first.value.body);
    const header = parseHeader(headerBytes);
    await manifest.record({ path: HEADER_PATH, entryType: 'file', size: headerBytes.length, sha256: sha256(headerBytes), ...appliedMetadata(first.value.header) });
    run.emit('start', { name, createdAt: new Date(header.createdAt), sources: header.sources.map(({ name: n, kind }) => ({ name: n, kind })) });
    const counted = new Map<string, Counted>(header.sources.map(({ name: n, kind }) => [n, { name: n, kind, bytes: 0, items: 0 }]));
    const statsOf = (sourceName: string): SourceStats => ({ ...counted.get(sourceName)! });

    const targets = plan.scratch ? await makeScratchTargets(plan, plan.scratch, header, scratch) : plan.targets;
    const chosen = resolveTargets(plan, targets, header);
    const skipped = header.sources.map((s) => s.name).filter((n) => !chosen.some(({ source }) => source.name === n));
    const journal = plan.scratch ? undefined : RestoreJournal.locate(name, chosen);
    const interrupted = await journal?.read();
    if (journal && interrupted) {
      // Killed between two commits earlier: its staging copies are verified and prepared; commit the rest.
      await reader.entries.return(undefined);
      if (plan.verifySignature && interrupted.signedBy === undefined) {
        throw new BackupError('SIGNATURE_INVALID', `The interrupted restore of ${name} being finished did not verify a signature; nothing more was committed`, {
          hint: 'Finish it with the options it was started with, or remove its staging copies and the .backupkit-restore-*.journal file beside the targets and restore again.',
        });
      }
      await journal.finish(interrupted, signal);
      const stats = interrupted.sources.map(({ name: sourceName, stats: s }) => ({ ...s, target: redact(chosen.find(({ source }) => source.name === sourceName)?.target) }));
      const result: RestoreResult = { name, durationMs: Date.now() - startedAt, sources: stats, skipped, verifiedEntries: interrupted.verifiedEntries, signedBy: interrupted.signedBy };
      progress.complete();
      return { result, scratch, checks, archived: interrupted.sources.map(({ stats: s }) => s) };
    }
    for (const { restorer, target } of chosen) await restorer.check(target);
    await ensureSpaceAnnounced(chosen);
    for (const { source, restorer, target } of chosen) {
      const sink = await restorer.begin(target, signal);
      restores.set(source.name, { name: source.name, kind: source.kind, target, sink });
    }

    let current: SourceRestore | undefined;
    let verified: number | undefined;
    for await (const { header: tarHeader, body } of entries) {
      if (signal.aborted) throw abortError(signal);
      if (verified !== undefined && tarHeader.name === SIGNATURE_PATH && tarHeader.type === 'file' && !signature.signatureRead) {
        await signature.readSignature(body);
        continue;
      }
      if (verified !== undefined) throw new BackupError('CORRUPT_ARCHIVE', `Entry ${JSON.stringify(tarHeader.name)} follows the manifest`);
      const parts = checkEntryPath(tarHeader.name);
      const type = tarHeader.type ?? 'file';
      if (!RESTORABLE_TYPES.has(type)) {
        throw new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(tarHeader.name)}: it is a ${type}, which backupkit never writes`);
      }
      if (parts.length === 1 && parts[0] === MANIFEST_PATH) {
        progress.enter('verify');
        verified = (await manifest.verify(signature.manifest(body), header.formatVersion)).entries;
        continue;
      }
      const [top, sourceName = '', ...rest] = parts;
      const relative = rest.join('/');
      const count = counted.get(sourceName);
      if (top !== SOURCES_DIR || !count) {
        throw new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(tarHeader.name)}: it is not under ${SOURCES_DIR}/<source>/`);
      }
      const restore = restores.get(sourceName);
      if (restore && restore !== current) {
        if (current) run.emit('source-end', statsOf(current.name));
        current = restore;
        run.emit('source-start', { name: restore.name, kind: restore.kind });
        const estimated = header.sources.find((s) => s.name === restore.name);
        progress.enter('read', restore.name, { bytes: estimated?.estimatedBytes ?? 0, items: 0 });
      }
      const hashed = new HashingBody(body, yieldNow);
      const metadata = appliedMetadata(tarHeader);
      if (restore) {
        await restore.sink.write({
          path: relative,
          type: type as EntryType,
          mode: metadata.mode,
          mtime: new Date(metadata.mtime * 1000),
          size: tarHeader.size ?? 0,
          ...(type === 'symlink' ? { linkTarget: metadata.linkTarget ?? '' } : {}),
          body: hashed,
        });
      }
      await hashed.drain();
      if (restore) progress.addSourceBytes(hashed.size);
      progress.addItem();
      count.bytes += hashed.size;
      count.items += 1;
      await manifest.record({ path: tarHeader.name.replace(/\/$/, ''), entryType: type as EntryType, size: hashed.size, sha256: hashed.digest(), ...metadata });
    }
    if (current) run.emit('source-end', statsOf(current.name));
    if (verified === undefined) throw new BackupError('CORRUPT_ARCHIVE', `${name} ends before its manifest: it is truncated`);
    const signedBy = await signature.check(header, name);

    progress.enter('verify');
    for (const restore of restores.values()) await restore.sink.prepare();
    const all = [...restores.values()];
    if (journal && all.every(({ sink }) => sink.staged)) {
      await journal.write({ archive: name, sources: all.map((r) => ({ name: r.name, staged: r.sink.staged!(), stats: statsOf(r.name) })), skipped, verifiedEntries: verified, signedBy });
      committing = journal;
    }
    progress.enter('commit');
    for (const restore of restores.values()) await restore.sink.commit();
    await committing?.remove();
    if (plan.checkTargets) {
      progress.enter('verify');
      for (const { name: sourceName, sink } of restores.values()) {
        if (signal.aborted) throw abortError(signal);
        progress.enter('verify', sourceName);
        checks.set(sourceName, sink.verify ? await sink.verify(manifest.entriesUnder(sourcePrefix(sourceName))) : []);
      }
    }
    progress.complete();
    const result: RestoreResult = {
      name,
      durationMs: Date.now() - startedAt,
      // A target may hold a connection string with its password: the result is printed and logged.
      sources: [...restores.values()].map((r) => ({ ...statsOf(r.name), target: redact(r.target) })),
      skipped,
      verifiedEntries: verified,
      signedBy,
    };
    return { result, scratch, checks, archived: header.sources.map((s) => statsOf(s.name)) };
  } catch (error) {
    const explained = reader ? reader.explain(error) : error;
    await reader?.entries.return(undefined).catch(() => {}); // closes the archive stream
    let undone = true;
    for (const restore of [...restores.values()].reverse()) await restore.sink.abort().catch(() => (undone = false));
    if (undone) await committing?.remove().catch(() => {}); // every commit undone: nothing left to finish
    for (const target of scratch.values()) await target.remove().catch(() => {});
    if (signal.aborted) throw abortError(signal);
    throw asBackupError(explained, 'RESTORE_FAILED', 'The restore failed');
  } finally {
    progress.stop();
    await manifest.dispose();
    await signature?.dispose();
  }
}

async function pickBackup(from: Destination, backup: string | undefined): Promise<{ name: string; size: number }> {
  if (backup !== undefined) {
    for await (const object of from.list(backup)) if (object.name === backup) return object;
    throw new BackupError('NOT_FOUND', `${from.description} has no backup named ${backup}`);
  }
  const [newest] = (await listArchives(from)).archives;
  if (!newest) throw new BackupError('NOT_FOUND', `${from.description} holds no backups`);
  return newest;
}

function resolveTargets(plan: RestorePlan, targets: Readonly<Record<string, unknown>>, header: ArchiveHeader) {
  const available = header.sources.map((s) => s.name).join(', ');
  return Object.entries(targets).map(([sourceName, rawTarget]) => {
    const source = header.sources.find((s) => s.name === sourceName);
    if (!source) {
      throw new BackupError('INVALID_OPTIONS', `The backup has no source named "${sourceName}"; it has: ${available}`);
    }
    const restorer = restorerOf(plan, source);
    return { source, restorer, target: restorer.parseTarget(rawTarget, sourceName) };
  });
}

function restorerOf(plan: RestorePlan, source: { name: string; kind: string }): Restorer {
  const restorer = plan.restorers.get(source.kind);
  if (!restorer) {
    throw new BackupError('UNSUPPORTED_FORMAT', `Source "${source.name}" is of kind "${source.kind}", which this backupkit cannot restore`, {
      hint: 'Register that kind with `registerSource` (in a CLI config file too), pass its restorer in `restorers`, or upgrade backupkit.',
    });
  }
  return restorer;
}

/**
 * Refuses, before anything is written, a restore whose sources the archive's header announces as
 * larger than the free space of the file system they are staged on (sources staged on one file
 * system add up). The header is a claim only, and an estimate: restorers check each entry's size
 * again as it comes, which is what bounds an archive that announces too little.
 */
async function ensureSpaceAnnounced(chosen: ReturnType<typeof resolveTargets>): Promise<void> {
  const byDevice = new Map<number, { folder: string; bytes: number; names: string[] }>();
  for (const { source, restorer, target } of chosen) {
    const announced = source.estimatedBytes;
    if (!restorer.stagingFolder || !Number.isSafeInteger(announced) || announced <= 0) continue;
    const folder = await nearestExisting(restorer.stagingFolder(target));
    const { dev } = await stat(folder);
    const group = byDevice.get(dev) ?? { folder, bytes: 0, names: [] };
    group.bytes += announced;
    group.names.push(JSON.stringify(source.name));
    byDevice.set(dev, group);
  }
  for (const { folder, bytes, names } of byDevice.values()) {
    await ensureSpace(folder, bytes, `The archive announces that source${names.length > 1 ? 's' : ''} ${names.join(', ')}`);
  }
}

/** `path`, or its nearest ancestor that exists: where a restore's missing parent folders would be made. */
async function nearestExisting(path: string): Promise<string> {
  for (let folder = path; ; folder = dirname(folder)) {
    try {
      await stat(folder);
      return folder;
    } catch (error) {
      if (!isNotFound(error) || dirname(folder) === folder) throw error;
    }
  }
}

/** A throwaway target for every source of the archive; each is recorded in `made` as soon as it exists. */
async function makeScratchTargets(
  plan: RestorePlan,
  space: ScratchSpace,
  header: ArchiveHeader,
  made: Map<string, ScratchTarget>,
): Promise<Record<string, unknown>> {
  const targets: Record<string, unknown> = {};
  for (const source of header.sources) {
    const restorer = restorerOf(plan, source);
    if (!restorer.scratch) {
      throw new BackupError('UNSUPPORTED_FORMAT', `Source "${source.name}" is of kind "${source.kind}", whose restorer cannot make a throwaway target`);
    }
    const target = await restorer.scratch(space, source.name);
    made.set(source.name, target);
    targets[source.name] = target.target;
  }
  return targets;
}

/** What a restore applies from a tar header besides the body: the manifest must agree with it. */
function appliedMetadata(header: Header): { mode: number; mtime: number; linkTarget?: string } {
  const mtime = header.mtime ? Math.trunc(header.mtime.getTime() / 1000) : 0;
  return { mode: header.mode ?? 0o644, mtime, ...(header.type === 'symlink' ? { linkTarget: header.linkname ?? '' } : {}) };
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** An entry's body that hashes what passes through; `drain()` reads what the restorer left. */
class HashingBody implements AsyncIterable<Uint8Array> {
  readonly #hash = createHash('sha256');
  readonly #source: AsyncIterator<Uint8Array>;
  readonly #yieldNow: () => Promise<void>;
  size = 0;

  constructor(body: AsyncIterable<Uint8Array>, yieldNow: () => Promise<void>) {
    this.#source = body[Symbol.asyncIterator]();
    this.#yieldNow = yieldNow;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return { next: () => this.#next() };
  }

  async drain(): Promise<void> {
    while (!(await this.#next()).done);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }

  async #next(): Promise<IteratorResult<Uint8Array>> {
    await this.#yieldNow();
    const result = await this.#source.next();
    if (!result.done) {
      this.#hash.update(result.value);
      this.size += result.value.length;
    }
    return result;
  }
}
