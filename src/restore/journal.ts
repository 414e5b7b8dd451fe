import { createHash } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BackupError } from '../errors.js';
import type { SourceStats } from '../operation.js';
import type { Restorer, RestoreSink } from '../types.js';
import { fsyncPath, isNotFound } from '../util/fs.js';

/** One source restored to one target, as the engine resolved it. */
export interface ChosenTarget {
  readonly source: { readonly name: string; readonly kind: string };
  readonly restorer: Restorer;
  readonly target: unknown;
}

/** What a journal records: written, fsynced, before the first commit of a restore of several sources. */
export interface JournalRecord {
  readonly format: typeof JOURNAL_FORMAT;
  readonly archive: string;
  /** The archives read, newest first (see `RestoreResult.chain`); absent in journals written before chains. */
  readonly chain?: readonly string[];
  /** The process that committed: while it lives, its journal is not an interrupted restore. */
  readonly pid: number;
  readonly host: string;
  /** In commit order: each source's staging copy, as its sink's `staged()` described it, and its counts. */
  readonly sources: ReadonlyArray<{ readonly name: string; readonly staged: unknown; readonly stats: SourceStats }>;
  readonly skipped: readonly string[];
  readonly verifiedEntries: number;
  /** The fingerprint of the key whose signature the interrupted restore verified, if it required one. */
  readonly signedBy?: string | undefined;
}

const JOURNAL_FORMAT = 'backupkit-restore-journal-1';
/** A journal is a few hundred bytes per source; anything larger is not one. */
const MAX_JOURNAL_BYTES = 1024 * 1024;

/**
 * The restore journal: what makes a restore of several sources finish as a whole. Each target is
 * committed by one rename, atomically; between two of them a killed process would leave some targets
 * restored and others not. So before the first commit the engine records where every prepared
 * staging copy is, and removes the record after the last; the next restore of the same archive into
 * the same targets finds it and completes the commits instead of refusing the targets it finds full.
 *
 * It lives beside the first target that has a folder, named after a hash of the archive's name and
 * the targets (which it does not contain: a connection string may hold a password).
 */
export class RestoreJournal {
  private constructor(
    private readonly path: string,
    private readonly chosen: readonly ChosenTarget[],
  ) {}

  /** The journal of restoring `archive` into these targets; undefined when no restorer of them can resume. */
  static locate(archive: string, chosen: readonly ChosenTarget[]): RestoreJournal | undefined {
    if (chosen.length < 2 || !chosen.every(({ restorer }) => restorer.resume)) return undefined;
    const home = chosen.find(({ restorer }) => restorer.stagingFolder);
    if (!home) return undefined;
    const key = createHash('sha256')
      .update(JSON.stringify([archive, ...chosen.map(({ source, target }) => [source.name, target])]))
      .digest('hex')
      .slice(0, 24);
    return new RestoreJournal(join(home.restorer.stagingFolder!(home.target), `.backupkit-restore-${key}.journal`), chosen);
  }

  /** The record an interrupted restore left, if any. A journal cut short by a kill was never acted on. */
  async read(): Promise<JournalRecord | undefined> {
    let text: string;
    try {
      const handle = await open(this.path, 'r');
      try {
        const { size } = await handle.stat();
        if (size > MAX_JOURNAL_BYTES) throw this.#unreadable(`it is ${size} bytes long`);
        text = await readFile(handle, 'utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    let record: Partial<JournalRecord>;
    try {
      record = JSON.parse(text) as Partial<JournalRecord>;
    } catch {
      // Written whole and fsynced before any commit: a torn journal means no commit happened.
      await this.remove();
      return undefined;
    }
    const names = this.chosen.map(({ source }) => source.name).sort();
    const recorded = Array.isArray(record.sources) ? record.sources.map((s) => s?.name).sort() : [];
    if (record.format !== JOURNAL_FORMAT || JSON.stringify(names) !== JSON.stringify(recorded)) {
      throw this.#unreadable('it does not describe this restore');
    }
    if (record.host === hostname() && record.pid !== process.pid && isAlive(record.pid)) {
      throw new BackupError('TARGET_NOT_EMPTY', `Another restore (process ${record.pid}) is committing into these targets; nothing was restored`, {
        hint: 'Wait for the other restore to end; if it is killed before it finishes, run this restore again to finish it.',
      });
    }
    return record as JournalRecord;
  }

  async write(record: Omit<JournalRecord, 'format' | 'pid' | 'host'>): Promise<void> {
    const handle = await open(this.path, 'wx', 0o600).catch((cause: NodeJS.ErrnoException) => {
      if (cause.code !== 'EEXIST') throw cause;
      throw new BackupError('TARGET_NOT_EMPTY', `Another restore into these targets is committing (${this.path}); nothing was replaced`, { cause });
    });
    try {
      await handle.writeFile(JSON.stringify({ format: JOURNAL_FORMAT, pid: process.pid, host: hostname(), ...record }));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsyncPath(join(this.path, '..'));
  }

  /** Finishes what `record` describes: commits, in order, every staging copy still there. */
  async finish(record: JournalRecord, signal: AbortSignal): Promise<void> {
    const resumed: RestoreSink[] = [];
    for (const { name, staged } of record.sources) {
      const { restorer, target } = this.chosen.find(({ source }) => source.name === name)!;
      const sink = await restorer.resume!(target, staged, signal);
      if (sink) resumed.push(sink);
    }
    for (const sink of resumed) {
      try {
        await sink.commit();
      } catch (cause) {
        throw new BackupError('RESTORE_FAILED', `Finishing the interrupted restore recorded in ${this.path} failed`, {
          cause,
          hint: 'Run the same restore again to finish it. To give it up instead, remove the journal and the hidden .backupkit- staging copies beside the targets.',
        });
      }
    }
    await this.remove();
  }

  async remove(): Promise<void> {
    await rm(this.path, { force: true });
  }

  #unreadable(why: string): BackupError {
    return new BackupError('RESTORE_FAILED', `The restore journal ${this.path} cannot be used: ${why}`, {
      hint: 'Remove the journal (and the hidden .backupkit- staging copies beside the targets), then restore again.',
    });
  }
}

function isAlive(pid: unknown): boolean {
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}
