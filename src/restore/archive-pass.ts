import { createHash } from 'node:crypto';
import type { Header } from 'tar-stream';
import { BackupError, abortError } from '../errors.js';
import { HEADER_PATH, MANIFEST_PATH, META_DIR, SOURCES_DIR, parseHeader, readHeaderBytes, type ArchiveHeader } from '../archive/format.js';
import type { DecryptOptions } from '../archive/encryption.js';
import { openArchive, type ArchiveReader } from '../archive/reader.js';
import { SIGNATURE_PATH, SignatureCheck, type VerifySignatureOptions } from '../archive/signature.js';
import type { SourceStats } from '../operation.js';
import type { ProgressReporter } from '../progress.js';
import type { Destination, EntryType, RestoreSink } from '../types.js';
import { ManifestCheck } from './manifest-check.js';
import { checkEntryPath } from './path-guard.js';

const RESTORABLE_TYPES: ReadonlySet<string> = new Set<EntryType>(['file', 'directory', 'symlink']);

/** Bytes and entries read of one source, restored or not. */
export type Counted = { -readonly [K in keyof SourceStats]: SourceStats[K] };

/**
 * An archive opened and its header read: the start of every read of a backup, whole or header only.
 */
export class OpenedArchive {
  private constructor(
    /** The archive's object name. */
    readonly name: string,
    readonly header: ArchiveHeader,
    readonly headerBytes: Buffer,
    readonly headerEntry: Header,
    readonly reader: ArchiveReader,
    /** Prefixes the messages of its failures: says which piece of a chain failed. */
    private readonly label: string | undefined,
    private readonly signal: AbortSignal,
  ) {}

  /** `label`, for a piece of a chain other than the backup restored, names it in every failure. */
  static async open(from: Destination, name: string, options: { signal: AbortSignal; onBytes: (bytes: number) => void; decrypt: DecryptOptions | undefined; label?: string | undefined }): Promise<OpenedArchive> {
    const { signal, onBytes, decrypt, label } = options;
    let reader: ArchiveReader | undefined;
    try {
      reader = await openArchive(await from.open(name), from.description, signal, onBytes, decrypt);
      const first = await reader.entries.next();
      if (first.done || first.value.header.name !== HEADER_PATH) {
        throw new BackupError('CORRUPT_ARCHIVE', `${name} does not start with ${HEADER_PATH}; it is not a backupkit archive`);
      }
      const headerBytes = await readHeaderBytes(first.value.body);
      return new OpenedArchive(name, parseHeader(headerBytes), headerBytes, first.value.header, reader, label, signal);
    } catch (error) {
      const explained = labelled(reader ? reader.explain(error) : error, label, signal);
      await reader?.entries.return(undefined).catch(() => {}); // closes the archive stream
      throw explained;
    }
  }

  /** SHA-256 of `header.json`: the archive read in full later must be the one whose header was read. */
  get headerDigest(): string {
    return sha256(this.headerBytes);
  }

  /** The real cause of a failure while reading it, named after the piece. */
  explain(error: unknown): unknown {
    return labelled(this.reader.explain(error), this.label, this.signal);
  }

  async close(): Promise<void> {
    await this.reader.entries.return(undefined).catch(() => {});
  }
}

function labelled(error: unknown, label: string | undefined, signal: AbortSignal): unknown {
  if (signal.aborted) return abortError(signal);
  if (label === undefined || !(error instanceof BackupError)) return error;
  return new BackupError(error.code, `${label}: ${error.message}`, { cause: error.cause ?? error, hint: error.hint, transient: error.transient });
}

/** Where one source's entries of an archive go. */
export interface SourceFeed {
  /** Counts what is read of the source. */
  readonly count: Counted;
  /** The staging copy receiving them; undefined for a source that is only verified. */
  readonly sink: RestoreSink | undefined;
}

/** What an {@link ArchivePass} needs from the restore it is part of. */
export interface PassContext {
  readonly signal: AbortSignal;
  readonly progress: ProgressReporter;
  readonly yieldNow: () => Promise<void>;
  readonly verifySignature: VerifySignatureOptions | undefined;
  /** Where a source's entries of this archive go; undefined for one whose entries are only verified. */
  feed(sourceName: string): SourceFeed | undefined;
  /** The restored source whose entries are read changed; `undefined` once the archive's last entry is read. */
  switchTo(sourceName: string | undefined): void;
}

/**
 * Reads one archive to its end: streams each source's entries into the sink its context names
 * while hashing them, then checks the manifest (and its signature when asked). Its manifest check
 * stays available afterwards, for `RestoreSink.verify`.
 */
export class ArchivePass {
  readonly manifest = new ManifestCheck();

  constructor(
    private readonly archive: OpenedArchive,
    private readonly context: PassContext,
  ) {}

  /** Reads every entry; returns how many the manifest vouched for and the signer's fingerprint, if checked. */
  async read(): Promise<{ verified: number; signedBy: string | undefined }> {
    const { signal, progress, yieldNow } = this.context;
    const { name, header, headerBytes, headerEntry, reader } = this.archive;
    const sources = new Set(header.sources.map((s) => s.name));
    let signature: SignatureCheck | undefined;
    try {
      signature = await SignatureCheck.create(this.context.verifySignature);
      await this.manifest.record({ path: HEADER_PATH, entryType: 'file', size: headerBytes.length, sha256: sha256(headerBytes), ...appliedMetadata(headerEntry) });
      let current: string | undefined;
      let verified: number | undefined;
      for await (const { header: tarHeader, body } of reader.entries) {
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
          verified = (await this.manifest.verify(signature.manifest(body), header.formatVersion)).entries;
          continue;
        }
        const [top, sourceName = '', ...rest] = parts;
        if ((top !== SOURCES_DIR && top !== META_DIR) || !sources.has(sourceName)) {
          throw new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(tarHeader.name)}: it is not under ${SOURCES_DIR}/<source>/ or ${META_DIR}/<source>/`);
        }
        const feed = this.context.feed(sourceName);
        if (feed?.sink && sourceName !== current) {
          current = sourceName;
          this.context.switchTo(sourceName);
        }
        const hashed = new HashingBody(body, yieldNow);
        const metadata = appliedMetadata(tarHeader);
        await feed?.sink?.write({
          path: rest.join('/'),
          type: type as EntryType,
          mode: metadata.mode,
          mtime: new Date(metadata.mtime * 1000),
          size: tarHeader.size ?? 0,
          ...(type === 'symlink' ? { linkTarget: metadata.linkTarget ?? '' } : {}),
          ...(top === META_DIR ? { meta: true as const } : {}),
          body: hashed,
          sha256: () => hashed.digest(),
        });
        await hashed.drain();
        if (feed?.sink) progress.addSourceBytes(hashed.size);
        progress.addItem();
        if (feed) {
          feed.count.bytes += hashed.size;
          feed.count.items += 1;
        }
        await this.manifest.record({ path: tarHeader.name.replace(/\/$/, ''), entryType: type as EntryType, size: hashed.size, sha256: hashed.digest(), ...metadata });
      }
      if (current !== undefined) this.context.switchTo(undefined);
      if (verified === undefined) throw new BackupError('CORRUPT_ARCHIVE', `${name} ends before its manifest: it is truncated`);
      return { verified, signedBy: await signature.check(header, name) };
    } catch (error) {
      throw this.archive.explain(error);
    } finally {
      await this.archive.close();
      await signature?.dispose();
    }
  }

  async dispose(): Promise<void> {
    await this.manifest.dispose();
  }
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
  #digest: string | undefined;
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

  /** Once the body is read to its end; the same value on every call. */
  digest(): string {
    this.#digest ??= this.#hash.digest('hex');
    return this.#digest;
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
