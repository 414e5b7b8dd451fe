/**
 * `<archive>.state`: what each source saved for the next incremental ({@link Snapshot.state}), as
 * a tar stream with one entry per source name, compressed and encrypted as the archive is, so that
 * it opens by hand like the archive and tells no more than the archive does. It is committed with
 * the archive and before the sidecar, which records its size and SHA-256: the next incremental
 * uses it only if it matches.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { ChecksumCounter } from '../archive/checksum.js';
import { compressor, Rechunk, type Compression } from '../archive/compression.js';
import { encryptor, type DecryptOptions, type Encryption } from '../archive/encryption.js';
import { STATE_EXTENSION } from '../archive/names.js';
import { openArchive } from '../archive/reader.js';
import type { StoredState } from '../archive/sidecar.js';
import { BackupError } from '../errors.js';
import type { Destination, PreviousState, Snapshot } from '../types.js';
import { ownerTag, removeAbandoned } from '../util/leftovers.js';
import { FanOut, type UploadTarget } from './fan-out.js';

const FOLDER_PREFIX = 'backupkit-state-';

/** The name of the state object stored with `archive`. */
export function stateName(archive: string): string {
  return `${archive}${STATE_EXTENSION}`;
}

/** A private temporary folder, one file per source: states may be large (a listing of a big tree). */
export class StateFolder {
  private constructor(readonly path: string) {}

  static async create(): Promise<StateFolder> {
    await removeAbandoned(tmpdir(), FOLDER_PREFIX);
    const path = join(tmpdir(), `${FOLDER_PREFIX}${ownerTag()}`);
    await mkdir(path, { mode: 0o700 });
    return new StateFolder(path);
  }

  /** Where the state of the `index`th source goes (source names are not file names). */
  file(index: number): string {
    return join(this.path, `${index}.state`);
  }

  async dispose(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

/** The states of a backup's sources, spooled after their entries were read, then stored. */
export class StateWriter {
  readonly #spooled: Array<{ source: string; file: string }> = [];

  private constructor(private readonly folder: StateFolder) {}

  static async create(): Promise<StateWriter> {
    return new StateWriter(await StateFolder.create());
  }

  get empty(): boolean {
    return this.#spooled.length === 0;
  }

  /** Spools the state of one source, if it has one. */
  async add(source: string, snapshot: Snapshot, signal: AbortSignal): Promise<void> {
    if (!snapshot.state) return;
    const file = this.folder.file(this.#spooled.length);
    await pipeline(Readable.from(snapshot.state()), createWriteStream(file, { mode: 0o600 }), { signal });
    this.#spooled.push({ source, file });
  }

  /** Streams the state object to every upload; returns what the sidecar records of it. */
  async write(uploads: readonly UploadTarget[], compression: Compression, encryption: Encryption | undefined, signal: AbortSignal, beforeEnd?: () => Promise<void>): Promise<StoredState> {
    const pack = tar.pack();
    const checksum = new ChecksumCounter();
    const encrypting = encryption ? [new Rechunk(), encryptor(encryption)] : [];
    const piping = pipeline([pack as unknown as Readable, compressor(compression), ...encrypting, checksum, new FanOut(uploads, signal, beforeEnd)], { signal });
    const packing = (async () => {
      for (const { source, file } of this.#spooled) {
        const { size } = await stat(file);
        const entry = pack.entry({ name: source, size, mode: 0o600, mtime: new Date() });
        await pipeline(createReadStream(file), entry as unknown as Writable, { signal });
      }
      pack.finalize();
    })();
    packing.catch((error: Error) => pack.destroy(error));
    await Promise.all([packing, piping]);
    return { size: checksum.size, sha256: checksum.digest() };
  }

  async dispose(): Promise<void> {
    await this.folder.dispose();
  }
}

/** What was read of a previous backup's state object: per source name, its state. */
export interface PreviousStates {
  readonly bySource: ReadonlyMap<string, PreviousState>;
  dispose(): Promise<void>;
}

/**
 * Reads `<previous>.state` into a temporary folder and checks it against the size and SHA-256
 * the previous sidecar records; throws a `BackupError` saying why it cannot be used.
 */
export async function readStates(destination: Destination, previous: string, expected: StoredState, decryption: DecryptOptions | undefined, signal: AbortSignal): Promise<PreviousStates> {
  const folder = await StateFolder.create();
  try {
    const checksum = new ChecksumCounter();
    const input = await destination.open(stateName(previous));
    const reader = await openArchive(input.pipe(checksum), destination.description, signal, () => {}, decryption);
    input.once('error', (error) => checksum.destroy(error));
    const files = new Map<string, string>();
    try {
      for await (const { header, body } of reader.entries) {
        if (header.type !== 'file' || files.has(header.name)) throw new BackupError('CORRUPT_ARCHIVE', `${stateName(previous)} holds an unexpected entry ${JSON.stringify(header.name)}`);
        const file = folder.file(files.size);
        await pipeline(Readable.from(body), createWriteStream(file, { mode: 0o600 }), { signal });
        files.set(header.name, file);
      }
    } catch (error) {
      throw reader.explain(error);
    }
    if (checksum.size !== expected.size || checksum.digest() !== expected.sha256) {
      throw new BackupError('CORRUPT_ARCHIVE', `${stateName(previous)} is not the state its sidecar records (${checksum.size} bytes read, ${expected.size} recorded)`);
    }
    const bySource = new Map<string, PreviousState>([...files].map(([source, file]) => [source, { archive: previous, read: () => createReadStream(file) }]));
    return { bySource, dispose: () => folder.dispose() };
  } catch (error) {
    await folder.dispose();
    throw error;
  }
}
