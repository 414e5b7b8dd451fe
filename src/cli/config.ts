import { access, readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackupOptions, CompressionOptions } from '../database.js';
import type { EncryptOptions } from '../archive/encryption.js';
import type { SignOptions, VerifySignatureOptions } from '../archive/signature.js';
import { BackupError } from '../errors.js';
import { destinationKinds, sourceKind, sourceKinds, type RestoreTarget } from '../kinds.js';
import type { RetentionPolicy } from '../retention.js';
import type { ScratchOptions } from '../restore/verify.js';
import type { ScheduleOptions } from '../schedule/index.js';
import type { Destination, Source } from '../types.js';
import { alternatives } from './output.js';

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
  /**
   * As in `startBackup`: `backupkit backup` takes the first destination's lease (exit code 4 when
   * another process holds it), and `backupkit run` too unless its `schedule` has its own `lease`.
   */
  lease?: BackupOptions['lease'];
  /** Applied after each backup, and by `backupkit prune`. */
  retention?: RetentionPolicy;
  /** Where `restore`, `list`, `verify` and `prune` look; default: the first of `to`. */
  from?: Destination;
  /** Where `backupkit restore` restores each source, by name. */
  targets?: Readonly<Record<string, RestoreTarget>>;
  /** Where `backupkit verify --level restore` makes its throwaway targets. */
  scratch?: ScratchOptions;
  /** What `backupkit run` runs and `backupkit status` reports on. */
  schedule?: CliScheduleConfig;
}

/**
 * The `schedule` section of a config file: when each type runs, as in `db.schedule()`. The
 * sources, `to`, `retention`, `compression`, `encrypt`, `sign` and `lease` are the config file's
 * own (`lease` here wins over the file's), and its `verifySignature` and `scratch` apply to the
 * scheduled verifications. `metrics` is where `backupkit run` serves the schedule's metrics.
 * @public
 */
export type CliScheduleConfig = Pick<ScheduleOptions, 'full' | 'incremental' | 'verify' | 'timeZone' | 'name' | 'verification' | 'lease'> & {
  metrics?: CliMetricsConfig;
};

/**
 * Where `backupkit run` serves its schedule's Prometheus metrics, at `/metrics` (prom-client, an
 * optional peer dependency, must be installed). Only backupkit's own metrics: prom-client's
 * default process metrics are not collected.
 * @public
 */
export interface CliMetricsConfig {
  /** The TCP port; `--metrics-port` wins over it. 0 lets the system choose one, which `run` prints. */
  port: number;
  /** The address to listen on; default `127.0.0.1`, this machine only. `0.0.0.0` or `::` for every interface. */
  host?: string;
}

/** The names looked for in the working folder when no `--config` is given. */
const DEFAULT_NAMES = ['backupkit.config.js', 'backupkit.config.mjs', 'backupkit.config.json'];

/**
 * Loads the config file given, or the first default one in `cwd`; none at all is an empty config.
 * Relative paths in it, JavaScript or JSON, are relative to the config file's folder.
 */
export async function loadConfig(path: string | undefined, cwd: string): Promise<CliConfig> {
  const file = path === undefined ? await firstExisting(DEFAULT_NAMES.map((name) => resolve(cwd, name))) : resolve(cwd, path);
  if (file === undefined) return {};
  const config = extname(file) === '.json' ? await fromJson(file, await readText(file)) : await fromJavaScript(file);
  return withPlainPathsResolved(config, dirname(file));
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

/**
 * Restore targets and the scratch folders (the file's, and that of the schedule's verifications)
 * are plain paths, resolved only when used: resolved here against the config's folder. A target's
 * kind is known only once the archive is read, so every field that is a path in some kind's
 * targets is resolved.
 */
function withPlainPathsResolved(config: CliConfig, folder: string): CliConfig {
  const pathFields = new Set(sourceKinds().flatMap((kind) => kind.pathFields ?? []));
  const at = (target: RestoreTarget): RestoreTarget => withPathsResolved(target, pathFields, folder);
  const scratchAt = <T extends { scratch?: ScratchOptions }>(options: T): T =>
    options.scratch?.dir === undefined ? options : { ...options, scratch: withPathsResolved(options.scratch, ['dir'], folder) };
  const verification = config.schedule?.verification;
  return {
    ...scratchAt(config),
    ...(config.targets === undefined ? {} : { targets: Object.fromEntries(Object.entries(config.targets).map(([name, target]) => [name, at(target)])) }),
    ...(verification === undefined ? {} : { schedule: { ...config.schedule, verification: scratchAt(verification) } }),
  };
}

/** `options` with those of `fields` that are strings resolved against `folder`. */
function withPathsResolved<T>(options: T, fields: Iterable<string>, folder: string): T {
  const resolved: Record<string, unknown> = { ...(options as object) };
  for (const field of fields) {
    const path = resolved[field];
    if (typeof path === 'string') resolved[field] = resolve(folder, path);
  }
  return resolved as T;
}

/** A URL's scheme, as `s3:`, when `spec` is a URL rather than a path. */
const URL_SCHEME = /^([a-z][a-z0-9+.-]*:)\/\//i;

/**
 * `/backups`, `./backups`, or a URL of a registered destination kind, such as
 * `s3://bucket/prefix?endpoint=http://host:9000&region=eu-west-1&path-style=true`.
 */
export function destinationFromSpec(spec: string, cwd: string): Destination {
  const scheme = URL_SCHEME.exec(spec)?.[1]?.toLowerCase();
  const kind = destinationKinds().find((k) => (scheme === undefined ? k.paths : k.schemes.includes(scheme)));
  if (!kind?.fromSpec) throw new BackupError('INVALID_OPTIONS', `${spec}: a destination is ${destinationForms()}`);
  return kind.fromSpec(spec, cwd);
}

/** How destinations can be written, for help and messages: `a folder, or s3://bucket/prefix[...]`. */
export function destinationForms(): string {
  const urls = destinationKinds().flatMap((kind) => (kind.urlForm === undefined ? kind.schemes.map((scheme) => `${scheme}//...`) : [kind.urlForm]));
  return alternatives(['a folder', ...urls]);
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
    const { kind: name, ...options } = (value ?? {}) as { kind?: string };
    const kind = destinationKinds().find((k) => k.kind === name);
    if (!kind) {
      const kinds = destinationKinds().map((k) => JSON.stringify(k.kind)).join(' | ');
      throw new BackupError('INVALID_OPTIONS', `${file}: a destination is ${destinationForms()}, or { "kind": ${kinds}, ... }`);
    }
    return kind.create(withPathsResolved(options, kind.pathFields ?? [], cwd) as never);
  };
  const source = (value: unknown): Source => {
    const { kind: name, ...options } = (value ?? {}) as { kind?: string };
    const kind = name === undefined ? undefined : sourceKind(name);
    if (!kind) {
      const kinds = sourceKinds().map((k) => JSON.stringify(k.kind)).join(' | ');
      throw new BackupError('INVALID_OPTIONS', `${file}: a source is { "kind": ${kinds}, "name": ..., ... }`);
    }
    return kind.source(withPathsResolved(options, kind.pathFields ?? [], cwd) as never);
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
