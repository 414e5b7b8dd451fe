import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { BackupError } from '../errors.js';
import { LineSpool } from '../util/line-spool.js';
import type { ManifestEntry, ManifestSummary } from '../archive/format.js';

type Computed = Pick<ManifestEntry, 'path' | 'entryType' | 'size' | 'sha256'>;

/**
 * Compares what was read with the manifest, which comes last. What was read is spooled to a
 * temporary file and the two are walked in step, so memory stays flat for any number of entries.
 */
export class ManifestCheck {
  #spool: LineSpool | undefined;
  #count = 0;

  async record(entry: Computed): Promise<void> {
    this.#spool ??= await LineSpool.create('verify');
    this.#count += 1;
    await this.#spool.append(JSON.stringify(entry));
  }

  /** Reads the manifest and throws `CORRUPT_ARCHIVE` at the first difference. */
  async verify(manifest: AsyncIterable<Uint8Array>): Promise<{ entries: number; summary: ManifestSummary }> {
    const spool = this.#spool;
    if (!spool) throw corrupt('the archive holds no entries before its manifest');
    const expected = createInterface({ input: Readable.from(manifest), crlfDelay: Infinity })[Symbol.asyncIterator]();
    const actual = createInterface({ input: await spool.read(), crlfDelay: Infinity })[Symbol.asyncIterator]();
    const first = await expected.next();
    const summary = parseLine<ManifestSummary>(first.value);
    if (first.done || summary.type !== 'summary') throw corrupt('the manifest has no summary line');
    for (let index = 0; ; index += 1) {
      const [want, got] = await Promise.all([expected.next(), actual.next()]);
      if (want.done && got.done) break;
      if (want.done || got.done) throw corrupt(`the manifest lists ${want.done ? 'fewer' : 'more'} entries than the archive holds`);
      const listed = parseLine<ManifestEntry>(want.value);
      const read = JSON.parse(got.value) as Computed;
      if (listed.path !== read.path) throw corrupt(`entry ${index + 1} is ${JSON.stringify(read.path)}, the manifest expects ${JSON.stringify(listed.path)}`);
      if (listed.entryType !== read.entryType || listed.size !== read.size || listed.sha256 !== read.sha256) {
        throw corrupt(`${JSON.stringify(read.path)} does not match its SHA-256 or size in the manifest`);
      }
    }
    if (summary.entries !== this.#count) throw corrupt(`the manifest counts ${summary.entries} entries, the archive holds ${this.#count}`);
    return { entries: this.#count, summary };
  }

  async dispose(): Promise<void> {
    await this.#spool?.dispose();
  }
}

function parseLine<T>(line: string | undefined): T {
  try {
    return JSON.parse(line ?? '') as T;
  } catch (cause) {
    throw corrupt('the manifest is not valid NDJSON', cause);
  }
}

function corrupt(why: string, cause?: unknown): BackupError {
  return new BackupError('CORRUPT_ARCHIVE', `Verification failed: ${why}`, { cause });
}
