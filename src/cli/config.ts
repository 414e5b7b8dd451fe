import { access, readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CompressionOptions, RestoreTarget } from '../database.js';
import type { EncryptOptions } from '../archive/encryption.js';
import type { SignOptions, VerifySignatureOptions } from '../archive/signature.js';
import { directory } from '../destinations/directory/index.js';
import { s3 } from '../destinations/s3/index.js';
import { BackupError } from '../errors.js';
import type { RetentionPolicy } from '../retention.js';
import type { ScratchOptions } from '../restore/verify.js';
import { files } from '../sources/files/index.js';
import { postgres } from '../sources/postgres/index.js';
import { sqlite } from '../sources/sqlite/index.js';
import type { Destination, Source } from '../types.js';

/**
 * The contents of a `backupkit.config.js` (its default export, or a function returning it) or
 * `backupkit.config.json`: the library's own options. In JSON, sources and destinations are
 * written as `{ "kind": "sqlite", "name": "app", "path": "app.db" }` and
 * `"/backups"` or `"s3://bucket/prefix"`; in JavaScript, with the factories (`sqlite(...)`).
 * In both, relative paths are relative to the config file's folder.
 * @public
 */
export interface CliConfig {
  /** What `backupkit backup` backs up. */
  sources?: readonly Source[];
  /** Where `backupkit backup` writes. */
  to?: Destination | readonly Destination[];
  /** As in `startBackup`. */
  compression?: CompressionOptions;
  /** As in `startBackup`; a passphrase is better taken from `BACKUPKIT_PASSPHRASE`. */
  encrypt?: EncryptOptions;
  /** As in `startBackup`; the key's passphrase is better taken from `BACKUPKIT_SIGN_KEY_PASSPHRASE`. */
  sign?: SignOptions;
  /** As in `Database.restore` and `verifyBackup`: `restore` and `verify` refuse archives not signed by one of these keys. */
  verifySignature?: VerifySignatureOptions;
  /** Applied after each backup, and by `backupkit prune`. */
  retention?: RetentionPolicy;
  /** Where `restore`, `list`, `verify` and `prune` look; default: the first of `to`. */
  from?: Destination;
  /** Where `backupkit restore` restores each source, by name. */
  targets?: Readonly<Record<string, RestoreTarget>>;
  /** Where `backupkit verify --level restore` makes its throwaway targets. */
  scratch?: ScratchOptions;
}

/** The names looked for in the working folder when no `--config` is given. */
const DEFAULT_NAMES = ['backupkit.config.js', 'backupkit.config.mjs', 'backupkit.config.json'];

type SourceFactory = (options: never) => Source;
const SOURCE_KINDS: Record<string, SourceFactory> = { sqlite, files, postgres } as Record<string, SourceFactory>;

/**
 * Loads the config file given, or the first default one in `cwd`; none at all is an empty config.
 * Relative paths in it, JavaScript or JSON, are relative to the config file's folder.
 */
export async function loadConfig(path: string | undefined, cwd: string): Promise<CliConfig> {
  const file = path === undefined ? await firstExisting(DEFAULT_NAMES.map((name) => resolve(cwd, name))) : resolve(cwd, path);
  if (file === undefined) return {};
  const config = extname(file) === '.json' ? await fromJson(file, await readText(file)) : await fromJavaScript(file);
  return withTargetsResolved(config, dirname(file));
}

/**
 * Runs a JavaScript config in its own folder: the factories it calls (`sqlite({ path })`,
 * `directory({ path })`) resolve their paths when called, as JSON's are resolved by `fromJson`.
 */
async function fromJavaScript(file: string): Promise<CliConfig> {
  const caller = process.cwd();
  try {
    process.chdir(dirname(file));
    const loaded = (await import(pathToFileURL(file).href)) as { default?: unknown };
    const config = typeof loaded.default === 'function' ? await (loaded.default as () => unknown)() : loaded.default;
    if (typeof config !== 'object' || config === null) throw new Error('its default export is not an object');
    return config as CliConfig;
  } catch (cause) {
    if (cause instanceof BackupError) throw cause;
    throw new BackupError('INVALID_OPTIONS', `Loading ${file} failed: ${(cause as Error).message}`, { cause, hint: 'A config file default-exports the options object, or a function returning it.' });
  } finally {
    process.chdir(caller);
  }
}

/** Restore targets and the scratch folder are plain paths, resolved only when used: resolved here against the config's folder. */
function withTargetsResolved(config: CliConfig, folder: string): CliConfig {
  const at = (target: RestoreTarget): RestoreTarget => {
    const paths = target as { path?: unknown; dir?: unknown };
    return {
      ...target,
      ...(typeof paths.path === 'string' ? { path: resolve(folder, paths.path) } : {}),
      ...(typeof paths.dir === 'string' ? { dir: resolve(folder, paths.dir) } : {}),
    } as RestoreTarget;
  };
  return {
    ...config,
    ...(config.targets === undefined ? {} : { targets: Object.fromEntries(Object.entries(config.targets).map(([name, target]) => [name, at(target)])) }),
    ...(config.scratch?.dir === undefined ? {} : { scratch: { ...config.scratch, dir: resolve(folder, config.scratch.dir) } }),
  };
}

/** `/backups`, `./backups` or `s3://bucket/prefix?endpoint=http://host:9000&region=eu-west-1&path-style=true`. */
export function destinationFromSpec(spec: string, cwd: string): Destination {
  if (spec.startsWith('s3://')) {
    const url = parseUrl(spec, 'an S3 destination');
    if (url.hostname === '') throw new BackupError('INVALID_OPTIONS', `${spec}: an S3 destination names its bucket: s3://bucket/prefix`);
    const endpoint = url.searchParams.get('endpoint') ?? undefined;
    const region = url.searchParams.get('region') ?? process.env['AWS_REGION'] ?? undefined;
    const pathStyle = url.searchParams.get('path-style');
    // Credentials come from the AWS SDK's usual chain: AWS_ACCESS_KEY_ID, profiles, instance roles.
    return s3({
      bucket: url.hostname,
      prefix: decodeURIComponent(url.pathname.replace(/^\//, '')),
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(region === undefined ? {} : { region }),
      ...(pathStyle === null ? {} : { forcePathStyle: pathStyle !== 'false' }),
    });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) throw new BackupError('INVALID_OPTIONS', `${spec}: a destination is a folder or s3://bucket/prefix`);
  return directory({ path: resolve(cwd, spec) });
}

/** A URL the user gave, or a usage error naming what it was meant to be. */
export function parseUrl(text: string, what: string): URL {
  try {
    return new URL(text);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(text)} is not a URL, as ${what} must be`, { cause });
  }
}

async function fromJson(file: string, text: string): Promise<CliConfig> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${file} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const cwd = resolve(file, '..');
  const destination = (value: unknown): Destination => {
    if (typeof value === 'string') return destinationFromSpec(value, cwd);
    const { kind, ...options } = (value ?? {}) as { kind?: string; path?: string };
    if (kind === 'directory') return directory({ ...options, path: resolve(cwd, options.path ?? '') });
    if (kind === 's3') return s3(options as Parameters<typeof s3>[0]);
    throw new BackupError('INVALID_OPTIONS', `${file}: a destination is "/path", "s3://bucket/prefix", or { "kind": "directory" | "s3", ... }`);
  };
  const source = (value: unknown): Source => {
    const { kind, ...options } = (value ?? {}) as { kind?: string; path?: string; dir?: string };
    const factory = kind === undefined ? undefined : SOURCE_KINDS[kind];
    if (!factory) throw new BackupError('INVALID_OPTIONS', `${file}: a source is { "kind": "sqlite" | "files" | "postgres", "name": ..., ... }`);
    const paths = { ...(options.path ? { path: resolve(cwd, options.path) } : {}), ...(options.dir ? { dir: resolve(cwd, options.dir) } : {}) };
    return factory({ ...options, ...paths } as never);
  };
  const list = (value: unknown) => (Array.isArray(value) ? value : value === undefined ? [] : [value]);
  return {
    ...(raw as CliConfig),
    ...(raw['sources'] === undefined ? {} : { sources: list(raw['sources']).map(source) }),
    ...(raw['to'] === undefined ? {} : { to: list(raw['to']).map(destination) }),
    ...(raw['from'] === undefined ? {} : { from: destination(raw['from']) }),
  };
}

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    if (await access(path).then(() => true, () => false)) return path;
  }
  return undefined;
}

/** Reads a file the user named, as a usage error when it cannot be read. */
export async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `Cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
}
