/**
 * A source kind defined outside backupkit (`node build/examples/custom-source.js`): a key-value
 * store kept as one JSON file of key -> value. Registered once with `registerSource`, it is backed
 * up, restored, verified and drilled like the built-in kinds, and a JavaScript CLI config file that
 * registers it can name its sources and targets (docs/guides/custom-source.md).
 *
 * Run directly, it backs up a store, restores it into an empty one, refuses a store that holds
 * keys, and verifies the backup by restoring it into a throwaway store.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackupError, Database, directory, registerSource, verifyBackup, type Restorer, type RestoreSink, type Source, type SourceKind } from 'backupkit';

/** A key-value store's restore target: the JSON file to restore into, missing or empty. */
export interface KvStoreTarget {
  path: string;
}

// Makes `targets: { settings: { path } }` type-check in Database.restore, as for the built-in kinds.
declare module 'backupkit' {
  interface RestoreTargets {
    'kv-store': KvStoreTarget;
  }
}

/** The store's one archive entry. */
const STORE_ENTRY = 'store.json';

/** The store's contents, or `undefined` when its file is missing; an empty file is an empty store. */
export async function readStore(path: string): Promise<Record<string, unknown> | undefined> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  return text === undefined ? undefined : text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
}

/** Writes the whole store at once (a temporary file renamed over it), so that a reader always sees one whole version. */
export async function writeStore(path: string, data: Readonly<Record<string, unknown>>): Promise<void> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  await writeFile(temporary, JSON.stringify(data), { mode: 0o600 });
  await rename(temporary, path);
}

/**
 * A key-value store as a source. Its snapshot is the file's bytes read once: the store replaces its
 * file whole, so they are one consistent version whatever the application writes meanwhile.
 */
export function kvStore(options: { name: string; path: string }): Source {
  if (typeof options?.path !== 'string' || options.path === '') throw new BackupError('INVALID_OPTIONS', `kvStore(${JSON.stringify(options?.name)}) needs a \`path\``);
  const path = resolve(options.path);
  return {
    kind: 'kv-store',
    name: options.name,
    role: 'database',
    async open() {
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
        JSON.parse(bytes.toString('utf8'));
      } catch (cause) {
        throw new BackupError('SOURCE_FAILED', `Reading the key-value store ${path} failed`, { cause });
      }
      const mtime = new Date(Math.floor(Date.now() / 1000) * 1000);
      return {
        estimate: async () => ({ bytes: bytes.length, items: 1 }),
        async *entries() {
          yield { path: STORE_ENTRY, type: 'file' as const, mode: 0o600, mtime, size: bytes.length, body: async function* () { yield bytes; } };
        },
        close: async () => {},
      };
    },
  };
}

/** Restores a store into a temporary file beside the target, renamed into place at commit. */
export const kvStoreRestorer: Restorer<KvStoreTarget> = {
  kind: 'kv-store',

  parseTarget(target, sourceName) {
    const path = (target as Partial<KvStoreTarget> | undefined)?.path;
    if (typeof path !== 'string' || path === '') throw new BackupError('INVALID_OPTIONS', `The target of key-value store "${sourceName}" needs a \`path\``);
    return { path: resolve(path) };
  },

  async check({ path }) {
    const keys = Object.keys((await readStore(path)) ?? {});
    if (keys.length > 0) throw new BackupError('TARGET_NOT_EMPTY', `${path} holds ${keys.length} key(s); nothing was restored`);
  },

  stagingFolder: ({ path }) => dirname(path),

  async begin({ path }): Promise<RestoreSink> {
    const createdParent = await mkdir(dirname(path), { recursive: true });
    const staging = `${path}.${randomUUID()}.partial`;
    let written = false;
    let replaced: Buffer | undefined;
    let committed = false;
    return {
      async write(entry) {
        if (entry.path !== STORE_ENTRY || entry.type !== 'file') throw new BackupError('CORRUPT_ARCHIVE', `A key-value store archive holds only ${STORE_ENTRY}, not ${entry.path}`);
        const chunks: Uint8Array[] = [];
        for await (const chunk of entry.body) chunks.push(chunk);
        await writeFile(staging, Buffer.concat(chunks), { mode: 0o600 });
        written = true;
      },
      async prepare() {
        if (!written) throw new BackupError('CORRUPT_ARCHIVE', `The archive holds no ${STORE_ENTRY}`);
        try {
          JSON.parse(await readFile(staging, 'utf8'));
        } catch (cause) {
          throw new BackupError('CORRUPT_ARCHIVE', `The archived ${STORE_ENTRY} is not JSON`, { cause });
        }
      },
      async commit() {
        // An empty store that was there is put back by abort().
        replaced = await readFile(path).catch(() => undefined);
        await rename(staging, path);
        committed = true;
      },
      async abort() {
        await rm(staging, { force: true });
        if (committed) await (replaced === undefined ? rm(path, { force: true }) : writeFile(path, replaced));
        if (createdParent !== undefined) await rm(createdParent, { recursive: true, force: true });
      },
      async verify(archived) {
        const restored = await readFile(path);
        const sha256 = createHash('sha256').update(restored).digest('hex');
        const problems: string[] = [];
        for await (const entry of archived) {
          if (entry.sha256 !== sha256) problems.push(`${path} differs from the archived ${entry.path}`);
        }
        return [{ name: 'store contents', figures: { keys: Object.keys(JSON.parse(restored.toString('utf8')) as object).length }, problems }];
      },
    };
  },

  async scratch(space, sourceName) {
    const path = join(space.dir, `${sourceName}.json`);
    return { target: { path }, remove: () => rm(path, { force: true }) };
  },
};

/** The kind as backupkit's registry takes it: `registerSource(kvStoreKind)`. */
export const kvStoreKind: SourceKind<KvStoreTarget, { name: string; path: string }> = {
  kind: 'kv-store',
  restorer: kvStoreRestorer,
  source: kvStore,
  pathFields: ['path'],
  describeTarget: ({ path }) => path,
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  registerSource(kvStoreKind);
  const work = await mkdtemp(join(tmpdir(), 'backupkit-custom-source-'));
  try {
    const settings = join(work, 'settings.json');
    await writeStore(settings, { theme: 'dark', 'max-upload-mb': 25, admins: ['ada', 'grace'] });
    const backups = directory({ path: join(work, 'backups') });
    const backup = await new Database({ sources: [kvStore({ name: 'settings', path: settings })] }).startBackup({ to: backups }).done;
    console.log(`wrote ${backup.name}`);

    const restoredPath = join(work, 'restored', 'settings.json');
    await Database.restore({ from: backups, targets: { settings: { path: restoredPath } } }).done;
    console.log(`restored ${Object.keys((await readStore(restoredPath)) ?? {}).length} keys, theme ${String((await readStore(restoredPath))?.['theme'])}`);

    const refused = await Database.restore({ from: backups, targets: { settings: { path: settings } } }).done.catch((error: BackupError) => error.code);
    console.log(`restoring over a store that holds keys: ${String(refused)}; ${(await stat(settings)).size} bytes untouched`);

    const verified = await verifyBackup({ from: backups, level: 'restore', scratch: { dir: work } });
    for (const check of verified.sources.flatMap((s) => s.checks)) console.log(`verified: ${check.name}: ${JSON.stringify(check.figures)}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
