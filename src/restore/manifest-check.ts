import { BackupError } from '../errors.js';
import { LineSpool } from '../util/line-spool.js';
import { METADATA_IN_MANIFEST, manifestLines, type ManifestEntry, type ManifestSummary } from '../archive/format.js';
import type { ArchivedEntry } from '../types.js';

type Computed = Pick<ManifestEntry, 'path' | 'entryType' | 'size' | 'sha256'> & { mode: number; mtime: number; linkTarget?: string };

/**
 * Compares what was read with the manifest, which comes last. What was read is spooled to a
 * temporary file and the two are walked in step, so memory stays flat for any number of entries.
 */
export class ManifestCheck {
  #spool: LineSpool | undefined;
  #count = 0;
  #verified = false;

  async record(entry: Computed): Promise<void> {
    this.#spool ??= await LineSpool.create('verify');
    this.#count += 1;
    await this.#spool.append(JSON.stringify(entry));
  }

  /**
   * Reads the manifest and throws `CORRUPT_ARCHIVE` at the first difference. From format
   * {@link METADATA_IN_MANIFEST} on, the metadata a restore applies must match too; older manifests
   * do not hold it.
   */
  async verify(manifest: AsyncIterable<Uint8Array>, formatVersion: number): Promise<{ entries: number; summary: ManifestSummary }> {
    const spool = this.#spool;
    if (!spool) throw corrupt('the archive holds no entries before its manifest');
    const expected = manifestLines(manifest);
    const actual = manifestLines(await spool.read());
    try {
      const first = await expected.next();
      const summary = parseLine<ManifestSummary>(first.value);
      if (first.done || summary.type !== 'summary') throw corrupt('the manifest has no summary line');
      // Damaged entries are all named, so that one can tell a bit flip from a wholesale loss; a
      // structural difference (an entry missing or added) ends the walk, as nothing after it lines up.
      const damaged: string[] = [];
      for (let index = 0; ; index += 1) {
        const [want, got] = await Promise.all([expected.next(), actual.next()]);
        if (want.done && got.done) break;
        if (want.done || got.done) throw corrupt(`the manifest lists ${want.done ? 'fewer' : 'more'} entries than the archive holds`, damaged);
        const listed = parseLine<ManifestEntry>(want.value);
        const read = JSON.parse(got.value) as Computed;
        if (listed.path !== read.path) {
          throw corrupt(`entry ${index + 1} is ${JSON.stringify(read.path)}, the manifest expects ${JSON.stringify(listed.path)}`, damaged);
        }
        if (listed.entryType !== read.entryType || listed.size !== read.size || listed.sha256 !== read.sha256) {
          damaged.push(`${JSON.stringify(read.path)} does not match its SHA-256 or size in the manifest`);
        } else if (formatVersion >= METADATA_IN_MANIFEST) {
          const differing = METADATA.filter((field) => listed[field] !== read[field]);
          if (differing.length > 0) damaged.push(`${JSON.stringify(read.path)} does not match its ${differing.join(', ')} in the manifest`);
        }
      }
      if (damaged.length > 0) throw corrupt(`${damaged.length} of ${this.#count} entries are damaged`, damaged);
      if (summary.entries !== this.#count) throw corrupt(`the manifest counts ${summary.entries} entries, the archive holds ${this.#count}`);
      this.#verified = true;
      return { entries: this.#count, summary };
    } finally {
      await actual.return(undefined); // closes the spool's file at once, also after a difference
    }
  }

  /** The entries under `prefix/`, as verified, with paths relative to it. Only after `verify`. */
  async *entriesUnder(prefix: string): AsyncGenerator<ArchivedEntry> {
    if (!this.#verified || !this.#spool) throw new Error('entriesUnder() before a successful verify()');
    for await (const line of manifestLines(await this.#spool.read())) {
      const entry = JSON.parse(line) as Computed;
      if (entry.path !== prefix && !entry.path.startsWith(`${prefix}/`)) continue;
      const { entryType: type, size, sha256, mode, linkTarget } = entry;
      yield { path: entry.path.slice(prefix.length + 1), type, size, sha256, mode, mtime: new Date(entry.mtime * 1000), ...(linkTarget === undefined ? {} : { linkTarget }) };
    }
  }

  async dispose(): Promise<void> {
    await this.#spool?.dispose();
  }
}

/** The metadata a restore applies besides the body, compared one by one so a message can name it. */
const METADATA = ['mode', 'mtime', 'linkTarget'] as const;

function parseLine<T>(line: string | undefined): T {
  try {
    return JSON.parse(line ?? '') as T;
  } catch (cause) {
    throw new BackupError('CORRUPT_ARCHIVE', 'Verification failed: the manifest is not valid NDJSON', { cause });
  }
}

/** Names up to this many damaged entries in an error message; the count says how many in all. */
const NAMED_PROBLEMS = 20;

function corrupt(why: string, damaged: readonly string[] = []): BackupError {
  const named = damaged.slice(0, NAMED_PROBLEMS).map((problem) => `\n  - ${problem}`).join('');
  const more = damaged.length > NAMED_PROBLEMS ? `\n  - and ${damaged.length - NAMED_PROBLEMS} more` : '';
  return new BackupError('CORRUPT_ARCHIVE', `Verification failed: ${why}${named}${more}`);
}
