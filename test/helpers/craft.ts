import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { buffer } from 'node:stream/consumers';
import tar, { type Header } from 'tar-stream';
import type { Destination } from '../../src/index.js';
import { put } from './put.js';

export interface CraftedEntry {
  header: Partial<Header> & { name: string };
  body?: Buffer;
}

export const CRAFTED_NAME = '20260101-000000.tar.gz';

/** A header.json for an archive with the given sources. */
export function headerEntry(sources: Array<{ name: string; kind: string }>, formatVersion = 1): CraftedEntry {
  const body = Buffer.from(
    JSON.stringify({
      format: 'backupkit',
      formatVersion,
      backupkitVersion: 'crafted',
      name: CRAFTED_NAME,
      createdAt: '2026-01-01T00:00:00.000Z',
      compression: { algorithm: 'gzip', level: 1 },
      sources: sources.map((s) => ({ ...s, estimatedBytes: 0, estimatedItems: 0 })),
    }),
  );
  return { header: { name: 'header.json', type: 'file', size: body.length }, body };
}

/** A manifest that matches `entries` exactly, metadata included, as a real backup would write it. */
export function manifestFor(entries: CraftedEntry[]): CraftedEntry {
  const lines = entries.map(({ header, body }) =>
    JSON.stringify({
      type: 'entry',
      path: header.name.replace(/\/$/, ''),
      entryType: header.type ?? 'file',
      size: body?.length ?? 0,
      sha256: createHash('sha256').update(body ?? Buffer.alloc(0)).digest('hex'),
      mode: (header.mode ?? CRAFTED_DEFAULTS.mode) & 0o7777,
      mtime: Math.trunc((header.mtime ?? CRAFTED_DEFAULTS.mtime).getTime() / 1000),
      ...(header.type === 'symlink' ? { linkTarget: header.linkname ?? '' } : {}),
    }),
  );
  const body = Buffer.from([JSON.stringify({ type: 'summary', entries: entries.length, sources: [], warnings: 0 }), ...lines].join('\n') + '\n');
  return { header: { name: 'manifest.ndjson', type: 'file', size: body.length }, body };
}

/** The mode and mtime of crafted entries whose header sets none. */
const CRAFTED_DEFAULTS = { mode: 0o644, mtime: new Date(0) };

/** Packs entries into a gzipped tar, exactly as given: nothing is checked or fixed. */
export async function craftArchive(entries: CraftedEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const out = buffer(pack as unknown as NodeJS.ReadableStream);
  for (const { header, body } of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry({ ...CRAFTED_DEFAULTS, size: body?.length ?? 0, ...header }, body ?? Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
    });
  }
  pack.finalize();
  return gzipSync(await out);
}

/**
 * A small archive named `name` whose header says what it builds on (`chain`: `{ type: 'full' }`, or
 * an incremental's `type`, `base` and `previous`), holding one file (`data`, default its name): what
 * prune reads of an archive.
 */
export function chainArchive(name: string, chain: Record<string, unknown> = { type: 'full' }, data = Buffer.from(name)): Promise<Buffer> {
  const [, day = '', time = ''] = /^(\d{8})-(\d{6})/.exec(name) ?? [];
  const createdAt = `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4, 6)}.000Z`;
  const sources = [{ name: 'app', kind: 'files', estimatedBytes: 1, estimatedItems: 1 }];
  const body = Buffer.from(`${JSON.stringify({ format: 'backupkit', formatVersion: 3, backupkitVersion: 'crafted', name, createdAt, compression: { algorithm: 'gzip', level: 1 }, sources, ...chain }, null, 2)}\n`);
  return craftArchive([{ header: { name: 'header.json', type: 'file' }, body }, { header: { name: 'sources/app/x', type: 'file' }, body: data }]);
}

/** Stores bytes under a backup name on a destination. */
export async function store(destination: Destination, bytes: Buffer, name = CRAFTED_NAME): Promise<void> {
  await put(destination, name, bytes);
}

/** A tar entry written byte by byte: its header may say anything, its body is written as given. */
export interface RawEntry {
  name: string;
  /** The typeflag character, `'0'` for a file, `'5'` a folder; any byte goes. */
  typeflag: string;
  /** The size the header declares; default the body's length. */
  size?: number;
  body?: Buffer;
  linkname?: string;
}

/** One ustar header block with a correct checksum, saying exactly what it is given. */
function rawHeader({ name, typeflag, size, linkname = '' }: RawEntry & { size: number }): Buffer {
  const block = Buffer.alloc(512);
  const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, '0') + '\0';
  block.write(name, 0, 100, 'utf8');
  block.write(octal(0o644, 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
  block.write(octal(size, 12), 124, 'latin1');
  block.write(octal(0, 12), 136, 'latin1');
  block.write(typeflag, 156, 1, 'latin1');
  block.write(linkname, 157, 100, 'utf8');
  block.write('ustar\x0000', 257, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'latin1');
  return block;
}

/** An uncompressed tar of raw entries: each header, its body padded to 512 bytes, two zero blocks. */
export function rawTar(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const body = entry.body ?? Buffer.alloc(0);
    parts.push(rawHeader({ ...entry, size: entry.size ?? body.length }), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The raw form of a crafted entry, with a correct size and type. */
export function raw({ header, body }: CraftedEntry): RawEntry {
  const typeflags: Record<string, string> = { file: '0', directory: '5', symlink: '2' };
  return { name: header.name, typeflag: typeflags[header.type ?? 'file'] ?? '0', ...(body ? { body } : {}), ...(header.linkname ? { linkname: header.linkname } : {}) };
}

export interface CraftedTocEntry {
  sql: string;
  owner?: string;
  /** A pre-data SCHEMA entry unless told. */
  kind?: string;
  section?: string;
}

/**
 * The entries of a PostgreSQL source whose toc.json holds `statements` as pre-data entries, what a
 * hostile archive's author writes, `database` over its defaults, and one table `public.t` with `rowCount`
 * rows of 1 in one chunk (140,000 make one above 256 KiB, which a restore spools to disk instead of keeping in memory).
 */
export function pgSource(statements: CraftedTocEntry[], database: Record<string, unknown> = {}, rowCount = 1): CraftedEntry[] {
  const file = (name: string, body: Buffer): CraftedEntry => ({ header: { name: `sources/pg/${name}`, type: 'file', size: body.length }, body });
  const rows = Buffer.from('1\n'.repeat(rowCount));
  const table = { entry: 1, qualifiedName: 'public.t', columns: ['id'], dataPath: 'data/1-public.t', estimatedBytes: 0 };
  const toc = {
    formatVersion: 1,
    server: { version: '15', versionNum: 150000 },
    database: { name: 'app', encoding: 'UTF8', collate: 'C', ctype: 'C', ...database },
    entries: [
      { id: 1, kind: 'TABLE', schema: 'public', name: 't', section: 'pre-data', deps: [], sql: 'CREATE TABLE public.t (id integer);' },
      ...statements.map(({ sql: text, owner, kind = 'SCHEMA', section = 'pre-data' }, index) => ({ id: index + 2, kind, schema: null, name: `s${index}`, section, deps: [], sql: text, ...(owner ? { owner } : {}) })),
    ],
    tables: [table],
    largeObjects: [],
  };
  const summary = { entry: 1, rows: rowCount, bytes: rows.length, chunks: 1, sha256: createHash('sha256').update(rows).digest('hex') };
  return [
    headerEntry([{ name: 'pg', kind: 'postgres' }]),
    file('toc.json', Buffer.from(JSON.stringify(toc))),
    file('data/1-public.t/000001.copy', rows),
    file('data.json', Buffer.from(JSON.stringify({ tables: [summary] }))),
  ];
}

/** An archive whose manifest agrees with every entry: only what the restore itself enforces stands in the way. */
export async function consistentArchive(statements: CraftedTocEntry[], database: Record<string, unknown> = {}, rowCount = 1): Promise<Buffer> {
  const entries = pgSource(statements, database, rowCount);
  return craftArchive([...entries, manifestFor(entries)]);
}
