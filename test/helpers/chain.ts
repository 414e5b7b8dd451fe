/**
 * A source kind that really is incremental (a folder of JSON records), and a writer of archives
 * crafted as docs/FORMAT.md specifies them, for the chains the backup engine never writes: a piece
 * of another chain, encrypted otherwise or with another key, an incremental of sources all in full.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError, type Destination, type RestoreLayer, type RestoreSink, type Restorer, type Source, type SourceKind, type SourceMode } from '../../src/index.js';
import { ChecksumCounter } from '../../src/archive/checksum.js';
import { compressor, Rechunk, resolveCompression } from '../../src/archive/compression.js';
import { encryptor, type Encryption } from '../../src/archive/encryption.js';
import { PARTIAL_SOURCES, FORMAT_NAME, FORMAT_VERSION, HEADER_PATH, sourcePrefix, type ArchiveHeader } from '../../src/archive/format.js';
import { archiveName, SIDECAR_EXTENSION, STATE_EXTENSION } from '../../src/archive/names.js';
import type { BackupSidecar } from '../../src/archive/sidecar.js';
import { ArchiveWriter } from '../../src/archive/writer.js';
import { listOrUndefined } from './fs.js';

/** The records of a folder: `<key>.json` files, by key. */
export async function readRecords(dir: string): Promise<Record<string, string>> {
  const records: Record<string, string> = {};
  for (const file of (await listOrUndefined(dir)) ?? []) if (file.endsWith('.json')) records[file.slice(0, -'.json'.length)] = await readFile(join(dir, file), 'utf8');
  return records;
}

export async function writeRecords(dir: string, records: Record<string, string>): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const [key, text] of Object.entries(records)) await writeFile(join(dir, `${key}.json`), text);
}

const sha256 = (bytes: string | Buffer) => createHash('sha256').update(bytes).digest('hex');

async function bytesOf(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * A folder of JSON records. In `changes` mode it sends only the records whose hash changed, and
 * always the list of every key as a `meta` entry, so a restore knows which records were deleted.
 * Its state is the key -> SHA-256 map. `incremental: false` makes a kind that is always full.
 */
export function recordsSource(kind: string, name: string, dir: string, incremental = true): Source {
  return {
    kind,
    name,
    role: 'files',
    async open(context) {
      const records = await readRecords(dir);
      const hashes = Object.fromEntries(Object.entries(records).map(([key, text]) => [key, sha256(text)]));
      const previous = context.previous ? (JSON.parse((await bytesOf(context.previous.read())).toString('utf8')) as Record<string, string>) : undefined;
      let mode: SourceMode = 'full';
      const keys = Object.keys(records).sort();
      const record = (path: string, text: string) => ({ path, type: 'file' as const, mode: 0o644, mtime: new Date(0), size: Buffer.byteLength(text), body: () => Readable.from([Buffer.from(text)]) });
      return {
        estimate: async () => ({ bytes: Object.values(records).reduce((sum, text) => sum + Buffer.byteLength(text), 0), items: keys.length }),
        async *entries() {
          yield { ...record('keys.json', JSON.stringify(keys)), meta: true as const };
          for (const key of keys) if (mode === 'full' || previous?.[key] !== hashes[key]) yield record(`${key}.json`, records[key] as string);
        },
        close: async () => {},
        ...(incremental
          ? {
              async changes() {
                mode = 'changes';
                const unchanged = JSON.stringify(Object.entries(previous ?? {}).sort()) === JSON.stringify(Object.entries(hashes).sort());
                return { mode, unchanged };
              },
              async *state() {
                yield Buffer.from(JSON.stringify(hashes));
              },
            }
          : {}),
      };
    },
  };
}

/** Every layer each sink was told of, by target folder. */
export const layersSeen = new Map<string, RestoreLayer[]>();

/** Restores a records folder from the layers of a chain, newest first: the first copy of a record wins, deleted keys are skipped. */
class RecordsSink implements RestoreSink {
  #keys: Set<string> | undefined;
  readonly #written = new Set<string>();
  #committed = false;

  constructor(
    private readonly dir: string,
    private readonly staging: string,
  ) {}

  async layer(layer: RestoreLayer): Promise<void> {
    layersSeen.set(this.dir, [...(layersSeen.get(this.dir) ?? []), layer]);
  }

  async write(entry: Parameters<RestoreSink['write']>[0]): Promise<void> {
    const body = await bytesOf(entry.body);
    if (entry.meta) {
      if (entry.path === 'keys.json') this.#keys ??= new Set(JSON.parse(body.toString('utf8')) as string[]); // the newest layer's list is the truth
      return;
    }
    const key = entry.path.replace(/\.json$/, '');
    if (entry.type !== 'file' || !this.#keys?.has(key) || this.#written.has(key)) return; // deleted, or replaced by a newer layer
    await writeFile(join(this.staging, entry.path), body);
    this.#written.add(key);
  }

  async prepare(): Promise<void> {
    const missing = [...(this.#keys ?? [])].filter((key) => !this.#written.has(key));
    if (missing.length > 0) throw new BackupError('CORRUPT_ARCHIVE', `The chain holds no copy of ${missing.join(', ')}`);
  }

  async commit(): Promise<void> {
    await rename(this.staging, this.dir);
    this.#committed = true;
  }

  async abort(): Promise<void> {
    await rm(this.#committed ? this.dir : this.staging, { recursive: true, force: true });
  }

  staged(): unknown {
    return { staging: this.staging };
  }

  async verify(archived: AsyncIterable<{ path: string; sha256: string }>) {
    const seen = new Set<string>();
    const problems: string[] = [];
    for await (const { path, sha256: expected } of archived) {
      const key = path.replace(/\.json$/, '');
      if (!this.#keys?.has(key) || seen.has(key)) continue;
      seen.add(key);
      if (sha256(await readFile(join(this.dir, path))) !== expected) problems.push(`${path} differs from the archive`);
    }
    const extra = (await readdir(this.dir)).filter((file) => !seen.has(file.replace(/\.json$/, '')));
    problems.push(...extra.map((file) => `${file} is in no layer`));
    return [{ name: 'records', figures: { records: seen.size }, problems }];
  }
}

function recordsRestorer(kind: string, layers: boolean): Restorer<{ dir: string }> {
  return {
    kind,
    parseTarget(target) {
      const dir = (target as { dir?: unknown } | undefined)?.dir;
      if (typeof dir !== 'string') throw new BackupError('INVALID_OPTIONS', 'A records target is { dir }');
      return { dir };
    },
    async check({ dir }) {
      if (((await listOrUndefined(dir)) ?? []).length > 0) throw new BackupError('TARGET_NOT_EMPTY', `${dir} is not empty`);
    },
    async begin({ dir }) {
      const staging = `${dir}.staging`;
      await mkdir(staging, { recursive: true });
      const sink = new RecordsSink(dir, staging);
      // A restorer written before chains: no `layer`.
      return layers ? sink : { write: (e) => sink.write(e), prepare: () => sink.prepare(), commit: () => sink.commit(), abort: () => sink.abort() };
    },
    stagingFolder: ({ dir }) => dirname(dir),
    async resume({ dir }, staged) {
      const { staging } = staged as { staging: string };
      if (!(await stat(staging).catch(() => undefined))) return undefined; // committed before the kill
      const sink = new RecordsSink(dir, staging);
      return { write: () => Promise.reject(new Error('A resumed restore receives no entries')), prepare: async () => {}, commit: () => sink.commit(), abort: () => sink.abort() };
    },
    async scratch(space, sourceName) {
      const dir = join(space.dir, sourceName);
      return { target: { dir }, remove: () => rm(dir, { recursive: true, force: true }) };
    },
  };
}

/** A kind of records folder: `incremental` sends changes; `layers: false` restores with a sink that has no `layer`. */
export function recordsKind(kind: string, options: { incremental: boolean; layers: boolean }): SourceKind<{ dir: string }, { name: string; dir: string }> {
  return {
    kind,
    restorer: recordsRestorer(kind, options.layers) as Restorer,
    source: ({ name, dir }) => recordsSource(kind, name, dir, options.incremental),
    describeTarget: ({ dir }) => dir,
  };
}

/** A folder of records that sends its changes in an incremental. */
export const RECORDS = recordsKind('records', { incremental: true, layers: true });
/** One that is always held in full: it has neither `changes` nor `state`. */
export const ALWAYS_FULL = recordsKind('records-full', { incremental: false, layers: true });
/** One restored by a restorer written before chains: its sink has no `layer`. */
export const LEGACY = recordsKind('records-legacy', { incremental: true, layers: false });

/** A backup written by {@link writeBackup}: what the next incremental builds on. */
export interface WrittenBackup {
  readonly name: string;
  readonly base: string;
  /** Each source's state, by name. */
  readonly states: ReadonlyMap<string, Buffer>;
}

/**
 * Writes one backup at a chosen time as docs/FORMAT.md specifies it: header (which `header` may
 * alter), each source's entries (`meta` ones under `meta/<source>/`), manifest; format 3 when a
 * source is held as `changes`; sidecar and `<archive>.state` beside it. A source with a state from
 * `after` is asked for its changes; one without is held in full.
 */
export async function writeBackup(
  to: Destination,
  sources: readonly Source[],
  options: { at: Date; after?: WrittenBackup; encryption?: Encryption; header?: (header: ArchiveHeader) => void },
): Promise<WrittenBackup> {
  const { at, after, encryption } = options;
  const name = archiveName(at, 0, `.tar.gz${encryption ? '.gpg' : ''}`);
  const link = after ? { type: 'incremental' as const, base: after.base, previous: after.name } : { type: 'full' as const };
  const signal = new AbortController().signal;
  const opened = [];
  for (const source of sources) {
    const state = after?.states.get(source.name);
    const previous = after && state ? { archive: after.name, read: () => Readable.from([state]) } : undefined;
    const snapshot = await source.open({ signal, warn: () => {}, archive: name, ...(previous ? { previous } : {}) });
    const mode: SourceMode = previous && snapshot.changes ? (await snapshot.changes()).mode : 'full';
    opened.push({ source, snapshot, mode, estimate: await snapshot.estimate() });
  }
  const compression = resolveCompression(undefined);
  const header: ArchiveHeader = {
    format: FORMAT_NAME,
    formatVersion: opened.some((o) => o.mode === 'changes') ? PARTIAL_SOURCES : FORMAT_VERSION,
    backupkitVersion: 'test',
    name,
    createdAt: at.toISOString(),
    compression,
    ...(encryption ? { encryption: { method: 'openpgp' as const, passphrase: encryption.passwords.length > 0, recipients: encryption.fingerprints } } : {}),
    sources: opened.map(({ source, mode, estimate }) => ({ name: source.name, kind: source.kind, estimatedBytes: estimate.bytes, estimatedItems: estimate.items, ...(after ? { mode } : {}) })),
    ...link,
  };
  options.header?.(header);
  const writer = await ArchiveWriter.create();
  const checksum = new ChecksumCounter();
  const upload = await to.create(name);
  const piping = pipeline([writer.tar as unknown as Readable, compressor(compression), ...(encryption ? [new Rechunk(), encryptor(encryption)] : []), checksum, upload.stream]);
  const stats = [];
  try {
    await writer.addBuffer(HEADER_PATH, Buffer.from(JSON.stringify(header)), at);
    for (const { source, snapshot } of opened) {
      let bytes = 0;
      let items = 0;
      for await (const entry of snapshot.entries()) {
        const prefix = entry.meta ? `meta/${source.name}` : sourcePrefix(source.name);
        await writer.add({ ...entry, path: entry.path === '' ? prefix : `${prefix}/${entry.path}`, body: entry.body?.() }, (n) => (bytes += n));
        items += 1;
      }
      stats.push({ name: source.name, kind: source.kind, bytes, items });
    }
    await writer.finish({ sources: stats, warnings: 0 });
    await piping;
  } finally {
    await writer.dispose();
  }
  await upload.commit();
  const sidecar: BackupSidecar = { ...header, size: checksum.size, sha256: checksum.digest(), encrypted: encryption !== undefined, sourceStats: stats, warnings: 0 };
  await put(to, `${name}${SIDECAR_EXTENSION}`, Buffer.from(JSON.stringify(sidecar)));
  const states = new Map<string, Buffer>();
  for (const { source, snapshot } of opened) if (snapshot.state) states.set(source.name, await bytesOf(snapshot.state()));
  // The engine stores a gzip'd tar; its content does not matter to restore or prune.
  await put(to, `${name}${STATE_EXTENSION}`, Buffer.from(JSON.stringify(Object.fromEntries([...states].map(([n, s]) => [n, s.toString('utf8')])))));
  for (const { snapshot } of opened) await snapshot.close();
  return { name, base: link.type === 'incremental' ? link.base : name, states };
}

async function put(to: Destination, name: string, bytes: Buffer): Promise<void> {
  const upload = await to.create(name);
  await pipeline(Readable.from([bytes]), upload.stream);
  await upload.commit();
}
