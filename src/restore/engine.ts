import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BackupError, abortError, asBackupError } from '../errors.js';
import { sourcePrefix, type ArchiveHeader } from '../archive/format.js';
import type { DecryptOptions } from '../archive/encryption.js';
import type { VerifySignatureOptions } from '../archive/signature.js';
import { dateFromArchiveName } from '../archive/names.js';
import { listArchives } from '../listing.js';
import type { OperationContext, SourceStats } from '../operation.js';
import { ProgressReporter } from '../progress.js';
import type { Destination, RestoreSink, Restorer, ScratchSpace, ScratchTarget, VerifyCheck } from '../types.js';
import { ensureSpace, isNotFound } from '../util/fs.js';
import { redact } from '../util/redact.js';
import { cooperative } from '../util/yield.js';
import { ArchivePass, OpenedArchive, type Counted } from './archive-pass.js';
import { planChain, type ChainPiece } from './chain-plan.js';
import { RestoreJournal } from './journal.js';
import type { RestoreEvents, RestoreResult } from './operation.js';

export interface RestorePlan {
  readonly from: Destination;
  readonly backup: string | undefined;
  /** Instead of `backup`: the newest backup made at or before this time. */
  readonly asOf?: Date | undefined;
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

/**
 * Reads one backup, and for an incremental the backups its chain builds on, newest first. Checks
 * every target and every piece of the chain before writing anything, streams each source's entries
 * into its restorer's staging copy (layer by layer) while hashing them, verifies every archive's
 * manifest, and only then commits. Any failure aborts every restorer: targets are left exactly as
 * they were.
 */
export async function runRestore(plan: RestorePlan, run: OperationContext<RestoreEvents>): Promise<RestoreRun> {
  const startedAt = Date.now();
  const { signal } = run;
  const progress = new ProgressReporter(plan.operation ?? 'restore', 'read', (event) => run.emit('progress', event));
  const restores = new Map<string, SourceRestore>();
  const scratch = new Map<string, ScratchTarget>();
  const checks = new Map<string, VerifyCheck[]>();
  const passes: Array<{ piece: ChainPiece; pass: ArchivePass }> = [];
  /** The backup restored, open and not yet handed to readChain: closed on failure. */
  let opened: OpenedArchive | undefined;
  /** The journal this restore wrote, while its commits run. */
  let committing: RestoreJournal | undefined;

  try {
    const { name, size } = await pickBackup(plan.from, plan.backup, plan.asOf);
    const open = (pieceName: string, onBytes: (bytes: number) => void) =>
      OpenedArchive.open(plan.from, pieceName, { signal, onBytes, decrypt: plan.decrypt, label: pieceName === name ? undefined : `${pieceName}, which ${name} builds on` });
    const first = await open(name, (n) => progress.addBytes(n));
    opened = first;
    const { header } = first;
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
      await first.close();
      if (plan.verifySignature && interrupted.signedBy === undefined) {
        throw new BackupError('SIGNATURE_INVALID', `The interrupted restore of ${name} being finished did not verify a signature; nothing more was committed`, {
          hint: 'Finish it with the options it was started with, or remove its staging copies and the .backupkit-restore-*.journal file beside the targets and restore again.',
        });
      }
      await journal.finish(interrupted, signal);
      const stats = interrupted.sources.map(({ name: sourceName, stats: s }) => ({ ...s, target: redact(chosen.find(({ source }) => source.name === sourceName)?.target) }));
      const result: RestoreResult = { name, chain: interrupted.chain ?? [name], durationMs: Date.now() - startedAt, sources: stats, skipped, verifiedEntries: interrupted.verifiedEntries, signedBy: interrupted.signedBy };
      progress.complete();
      return { result, scratch, checks, archived: interrupted.sources.map(({ stats: s }) => s) };
    }
    const chain = await planChain(plan.from, { archive: first, size }, (pieceName) => open(pieceName, () => {}));
    progress.setTotals(
      chain.reduce((sum, piece) => sum + piece.size, 0),
      0,
    );
    for (const { restorer, target } of chosen) await restorer.check(target);
    await ensureSpaceAnnounced(chosen, chain);
    for (const { source, restorer, target } of chosen) {
      const sink = await restorer.begin(target, signal, { verified: plan.checkTargets === true });
      restores.set(source.name, { name: source.name, kind: source.kind, target, sink });
    }
    requireLayers(chain, restores);

    opened = undefined; // readChain closes it
    const { verifiedEntries, signedBy } = await readChain(chain, first, { plan, run, progress, restores, counted, passes, open: (pieceName) => open(pieceName, (n) => progress.addBytes(n)) });

    progress.enter('verify');
    for (const restore of restores.values()) await restore.sink.prepare();
    const all = [...restores.values()];
    const pieces = chain.map((piece) => piece.name);
    if (journal && all.every(({ sink }) => sink.staged)) {
      await journal.write({ archive: name, chain: pieces, sources: all.map((r) => ({ name: r.name, staged: r.sink.staged!(), stats: statsOf(r.name) })), skipped, verifiedEntries, signedBy });
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
        const layers = passes.filter(({ piece }) => piece.layers.has(sourceName)).map(({ pass }) => pass.manifest.entriesUnder(sourcePrefix(sourceName)));
        checks.set(sourceName, sink.verify ? await sink.verify(concat(layers)) : []);
      }
    }
    progress.complete();
    const result: RestoreResult = {
      name,
      chain: pieces,
      durationMs: Date.now() - startedAt,
      // A target may hold a connection string with its password: the result is printed and logged.
      sources: [...restores.values()].map((r) => ({ ...statsOf(r.name), target: redact(r.target) })),
      skipped,
      verifiedEntries,
      signedBy,
    };
    return { result, scratch, checks, archived: header.sources.map((s) => statsOf(s.name)) };
  } catch (error) {
    await opened?.close();
    let undone = true;
    for (const restore of [...restores.values()].reverse()) await restore.sink.abort().catch(() => (undone = false));
    if (undone) await committing?.remove().catch(() => {}); // every commit undone: nothing left to finish
    for (const target of scratch.values()) await target.remove().catch(() => {});
    if (signal.aborted) throw abortError(signal);
    throw asBackupError(error, 'RESTORE_FAILED', 'The restore failed');
  } finally {
    progress.stop();
    for (const { pass } of passes) await pass.dispose();
  }
}

/** What {@link readChain} needs of the restore. */
interface ChainReading {
  readonly plan: RestorePlan;
  readonly run: OperationContext<RestoreEvents>;
  readonly progress: ProgressReporter;
  readonly restores: ReadonlyMap<string, SourceRestore>;
  /** What is read of each source, in the layers it is restored from. */
  readonly counted: ReadonlyMap<string, Counted>;
  readonly open: (name: string) => Promise<OpenedArchive>;
  /** Every pass made, for the caller to dispose: their manifests serve `RestoreSink.verify` after the commit. */
  readonly passes: Array<{ piece: ChainPiece; pass: ArchivePass }>;
}

/**
 * Reads every piece of a chain, newest first (`first`, already open, is the backup restored): tells
 * each restored source's sink of the layer, then streams it the piece's entries of that source.
 * `source-start` comes with a source's first entry, `source-end` after its deepest layer's last.
 * Closes every archive it is given or opens, also on failure.
 */
async function readChain(chain: readonly ChainPiece[], first: OpenedArchive, reading: ChainReading): Promise<{ verifiedEntries: number; signedBy: string | undefined }> {
  const { plan, run, progress, restores, counted, passes } = reading;
  const started = new Set<string>();
  const deepest = new Map(chain.flatMap((piece) => [...piece.layers.keys()].map((sourceName) => [sourceName, piece.depth] as const)));
  const statsOf = (sourceName: string): SourceStats => ({ ...counted.get(sourceName)! });
  const yieldNow = cooperative();
  let verifiedEntries = 0;
  let signedBy: string | undefined;
  for (const piece of chain) {
    const archive = piece.depth === 0 ? first : await reading.open(piece.name);
    try {
      if (archive.headerDigest !== piece.headerDigest) {
        throw new BackupError('CORRUPT_ARCHIVE', `${piece.name} changed while ${first.name} was being restored: its header is not the one read first; nothing was written`);
      }
      for (const [sourceName, mode] of piece.layers) await restores.get(sourceName)?.sink.layer?.({ archive: piece.name, mode, depth: piece.depth });
    } catch (error) {
      await archive.close();
      throw error;
    }
    let current: string | undefined;
    const pass = new ArchivePass(archive, {
      signal: run.signal,
      progress,
      yieldNow,
      verifySignature: plan.verifySignature,
      feed: (sourceName) => (piece.layers.has(sourceName) ? { count: counted.get(sourceName)!, sink: restores.get(sourceName)?.sink } : undefined),
      switchTo: (next) => {
        if (current !== undefined && deepest.get(current) === piece.depth) run.emit('source-end', statsOf(current));
        current = next;
        if (next === undefined) return;
        if (!started.has(next)) {
          started.add(next);
          run.emit('source-start', { name: next, kind: counted.get(next)!.kind });
        }
        progress.enter('read', next, { bytes: piece.header.sources.find((s) => s.name === next)?.estimatedBytes ?? 0, items: 0 });
      },
    });
    passes.push({ piece, pass });
    const read = await pass.read();
    verifiedEntries += read.verified;
    if (piece.depth === 0) signedBy = read.signedBy;
  }
  return { verifiedEntries, signedBy };
}

/** Refuses, before anything is written, a restorer that cannot build its source from the layers of a chain. */
function requireLayers(chain: readonly ChainPiece[], restores: ReadonlyMap<string, SourceRestore>): void {
  for (const { name, kind, sink } of restores.values()) {
    const changes = chain.find((piece) => piece.layers.get(name) === 'changes');
    if (changes && !sink.layer) {
      throw new BackupError('RESTORE_FAILED', `${changes.name} holds only the changes of source "${name}", and the restorer of kind "${kind}" cannot apply the layers of a chain; nothing was written`, {
        hint: `Upgrade the package that provides the "${kind}" kind, or restore a full backup of it.`,
      });
    }
  }
}

async function* concat<T>(iterables: ReadonlyArray<AsyncIterable<T>>): AsyncGenerator<T> {
  for (const iterable of iterables) yield* iterable;
}

async function pickBackup(from: Destination, backup: string | undefined, asOf: Date | undefined): Promise<{ name: string; size: number }> {
  if (asOf !== undefined) {
    if (!(asOf instanceof Date) || Number.isNaN(asOf.getTime())) throw new BackupError('INVALID_OPTIONS', '`asOf` must be a valid Date');
    if (backup !== undefined) throw new BackupError('INVALID_OPTIONS', 'Give `backup` or `asOf`, not both');
    return pickAsOf(from, asOf);
  }
  if (backup !== undefined) {
    for await (const object of from.list(backup)) if (object.name === backup) return object;
    throw new BackupError('NOT_FOUND', `${from.description} has no backup named ${backup}`);
  }
  const [newest] = (await listArchives(from)).archives;
  if (!newest) throw new BackupError('NOT_FOUND', `${from.description} holds no backups`);
  return newest;
}

/** The newest backup whose name says it started at or before `asOf` (names keep the second). */
async function pickAsOf(from: Destination, asOf: Date): Promise<{ name: string; size: number }> {
  const { archives } = await listArchives(from);
  const chosen = archives.find((archive) => (dateFromArchiveName(archive.name) as Date) <= asOf); // listArchives keeps archive names only
  if (chosen) return chosen;
  const oldest = archives.at(-1);
  const holds = oldest ? `its oldest backup is ${oldest.name}, made ${dateFromArchiveName(oldest.name)?.toISOString()}` : 'it holds no backups';
  throw new BackupError('NOT_FOUND', `${from.description} has no backup made at or before ${asOf.toISOString()}: ${holds}`);
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
async function ensureSpaceAnnounced(chosen: ReturnType<typeof resolveTargets>, chain: readonly ChainPiece[]): Promise<void> {
  const byDevice = new Map<number, { folder: string; bytes: number; names: string[] }>();
  for (const { source, restorer, target } of chosen) {
    // A chain's layers of a source add up: the newest replace parts of the older, but may not.
    const announced = chain.filter((piece) => piece.layers.has(source.name)).reduce((sum, piece) => sum + (piece.header.sources.find((s) => s.name === source.name)?.estimatedBytes ?? 0), 0);
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
