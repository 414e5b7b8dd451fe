/**
 * The contracts between the engine and its adapters. A source knows nothing of tar, compression or
 * destinations; a destination knows nothing of sources or formats. Adapters import only this file
 * and `errors.ts`.
 */
import type { Writable, Readable } from 'node:stream';

/**
 * A full backup restores on its own; an incremental builds on the backups of its chain before it.
 * @public
 */
export type BackupType = 'full' | 'incremental';

/**
 * How an archive holds one source: `full`, or in an incremental only its `changes` since the
 * backup before it (plus what a restore needs to rebuild the whole from the chain).
 * @public
 */
export type SourceMode = 'full' | 'changes';

/**
 * The kinds of entry an archive holds.
 * @public
 */
export type EntryType = 'file' | 'directory' | 'symlink';

/**
 * One item of a source's snapshot, as the source streams it.
 * @public
 */
export interface Entry {
  /** Path relative to the source's root, `/`-separated; `''` is the root itself. */
  readonly path: string;
  /** What the entry is. */
  readonly type: EntryType;
  /** Permission bits (for example `0o644`). */
  readonly mode: number;
  /** Modification time, kept to the second. */
  readonly mtime: Date;
  /** Size in bytes of a file's body, announced before the body is read; 0 for other types. */
  readonly size: number;
  /** Where a symbolic link points, exactly as stored in the link. */
  readonly linkTarget?: string;
  /**
   * A file's contents. If it yields more or fewer bytes than `size` (the file changed while it was
   * read), the archive cuts or pads it to `size` and records a warning.
   */
  readonly body?: () => AsyncIterable<Uint8Array>;
  /**
   * The SHA-256 (hex) of the body as the archive stores it (its first `size` bytes, padded with
   * zeros to `size` if it yielded fewer), for a source that hashes its data where it reads it, off
   * the host's main thread. Asked once the archive has read the body (or cut it); with it, the
   * archive does not hash the body again. A source that cannot vouch for exactly that leaves it out.
   */
  readonly bodySha256?: () => string | Promise<string>;
  /**
   * Told, once the entry is archived, the SHA-256 (hex) of the body as stored (cut or padded to
   * `size`), the one the manifest records: a source that keeps hashes of its own, such as a folder's
   * listing for its incrementals, takes them here rather than hashing every body a second time.
   */
  readonly archived?: (sha256: string) => void;
  /**
   * Archived under `meta/<source>/` instead of `sources/<source>/`: data about the source that is no
   * part of its tree, such as an incremental's full listing of a folder.
   */
  readonly meta?: true;
}

/**
 * Something worth knowing that did not stop the backup.
 * @public
 */
export interface BackupWarning {
  /**
   * `FILE_CHANGED`: modified while read; `SIZE_MISMATCH`: cut or padded; `SKIPPED`: not backed up;
   * `PRUNE_FAILED`: the backup succeeded, applying the retention policy did not;
   * `INCREMENTAL_BASE_MISSING`: an incremental was asked for, but the first destination holds no
   * earlier backup of these sources, so it is a full; `INCREMENTAL_BASE_REJECTED`: the earlier
   * backup cannot be built on (encrypted differently), so it is a full.
   */
  readonly code: 'FILE_CHANGED' | 'SIZE_MISMATCH' | 'SKIPPED' | 'PRUNE_FAILED' | 'INCREMENTAL_BASE_MISSING' | 'INCREMENTAL_BASE_REJECTED';
  /** The source it concerns, if any. */
  readonly source?: string;
  /** The entry's path inside its source, if the warning is about one entry. */
  readonly path?: string;
  /** A sentence for people. */
  readonly message: string;
}

/**
 * What the engine hands a source when it opens a snapshot.
 * @public
 */
export interface SnapshotContext {
  /** Aborted when the backup is cancelled. */
  readonly signal: AbortSignal;
  /** Reports a warning; `source` is filled in by the engine. */
  warn(warning: Omit<BackupWarning, 'source'>): void;
  /** The name of the archive being written: what a later incremental's entries may refer to. */
  readonly archive: string;
  /**
   * Set when this backup is an incremental and the backup before it in its chain saved a state for
   * this source ({@link Snapshot.state}): the snapshot may then send only what changed since.
   */
  readonly previous?: PreviousState;
}

/**
 * What a source saved with the previous backup of a chain, read back from the destination (and
 * checked against the SHA-256 its sidecar records) before the source is opened.
 * @public
 */
export interface PreviousState {
  /** The previous backup's archive name. */
  readonly archive: string;
  /** The bytes its `Snapshot.state()` gave; each call reads them again from the start. */
  read(): AsyncIterable<Uint8Array>;
}

/**
 * What an incremental snapshot holds, decided before its entries are read.
 * @public
 */
export interface SnapshotChanges {
  /**
   * `full`: `entries()` yields everything, as in a full backup (also when the previous state cannot
   * be built on: say why with a warning); `changes`: only what changed since the previous backup,
   * plus whatever a restore needs to rebuild the whole from the chain (a listing, a page count).
   */
  readonly mode: SourceMode;
  /** Nothing changed since the previous backup; when every source says so, no backup is written. */
  readonly unchanged: boolean;
}

/**
 * A source's view of its data, frozen when it was opened.
 * @public
 */
export interface Snapshot {
  /** Expected bytes and items, for percent and ETA; may be approximate. */
  estimate(): Promise<{ bytes: number; items: number }>;
  /** The snapshot's contents, in a stable order, directories before what they hold. */
  entries(): AsyncIterable<Entry>;
  /** Releases the snapshot; always called, also after a failure. */
  close(): Promise<void>;
  /**
   * Incrementals only, called once after `open` when the context has `previous`: what `entries()`
   * will yield. Without it, a source is held in full in every archive.
   */
  changes?(): Promise<SnapshotChanges>;
  /**
   * Called after `entries()` was read to the end, in fulls and incrementals alike: the bytes the
   * next incremental needs to tell what changed (page hashes, a listing with inodes). The engine
   * stores them beside the archive, compressed and encrypted as the archive is, and hands them back
   * as `SnapshotContext.previous`. Without it, the next incremental holds this source in full.
   */
  state?(): AsyncIterable<Uint8Array>;
}

/**
 * What `sqlite()`, `files()` and other source factories return.
 * @public
 */
export interface Source {
  /** The adapter kind, stored in the archive; restore picks the restorer by it. */
  readonly kind: string;
  /** Unique in a Database; the archive prefix is `sources/<name>/`. */
  readonly name: string;
  /** Databases are captured before file trees, which may only reference what a database holds. */
  readonly role: 'database' | 'files';
  /** Takes the consistent snapshot now. */
  open(context: SnapshotContext): Promise<Snapshot>;
}

/**
 * One entry read from an archive, as a restorer receives it.
 * @public
 */
export interface RestoreEntry {
  /** Path relative to the source's root, already checked to be safe; `''` is the root. */
  readonly path: string;
  /** What the entry is. */
  readonly type: EntryType;
  /** Permission bits to apply. */
  readonly mode: number;
  /** Modification time to apply. */
  readonly mtime: Date;
  /** Size of a file's body in bytes. */
  readonly size: number;
  /** Where a symbolic link points, as archived: data, never followed while restoring. */
  readonly linkTarget?: string;
  /** A file's contents; must be consumed fully. */
  readonly body: AsyncIterable<Uint8Array>;
  /**
   * The SHA-256 (hex) of a file's contents, once `body` has been read to its end: what the archive
   * reader computed to verify the entry, so that a restorer checking contents need not hash them
   * again. Absent when the caller does not offer it.
   */
  readonly sha256?: () => string;
  /** Set for an entry the source yielded with `meta` (archived under `meta/<source>/`): no part of the target's tree. */
  readonly meta?: true;
}

/**
 * One archive of a chain, as a {@link RestoreSink} is told before reading its entries of it.
 * @public
 */
export interface RestoreLayer {
  /** The archive's name. */
  readonly archive: string;
  /** `full`: the archive holds the source in full, and is the last layer read; `changes`: only what changed. */
  readonly mode: SourceMode;
  /** 0 for the backup being restored, 1 for the one before it in its chain, and so on. */
  readonly depth: number;
}

/**
 * What a restorer is told of the restore it begins.
 * @public
 */
export interface RestoreIntent {
  /**
   * Whether {@link RestoreSink.verify} will read the target back after the commit
   * (`verifyBackup({ level: 'restore' })`). Absent: it may be, and the sink restores so that it can.
   */
  readonly verified?: boolean;
}

/**
 * Receives one source's entries into a staging location.
 * @public
 */
export interface RestoreSink {
  /**
   * Called before the source's entries of each archive read: the backup being restored first, then,
   * while the archives read hold the source as `changes`, the ones before it in its chain, newest
   * first, down to one that holds it in full. Entries of an older layer that a newer one replaced or
   * deleted must not reach the target. Without it, the restorer restores only archives that hold its
   * source in full (a restore needing more fails with `RESTORE_FAILED`).
   */
  layer?(layer: RestoreLayer): Promise<void>;
  /** Writes one entry into the staging location; entries come in archive order. */
  write(entry: RestoreEntry): Promise<void>;
  /** All entries are written and verified: finish the staging copy and check it. */
  prepare(): Promise<void>;
  /** Moves the staging copy into place. */
  commit(): Promise<void>;
  /** Removes the staging copy, or undoes a commit: the target is left as it was found. */
  abort(): Promise<void>;
  /**
   * After `prepare`: what `Restorer.resume` needs to find the staging copy again (JSON-safe). It is
   * written to the restore journal before the first commit, so that a restore of several sources
   * interrupted between two commits can be finished by the next one.
   */
  staged?(): unknown;
  /**
   * After `commit`, re-reads the target and compares it with what the archive held: used by
   * `verifyBackup({ level: 'restore' })`. `archived` lists this source's entries as the manifest
   * does, already checked against their SHA-256. For a chain it lists those of every layer read,
   * newest first, so a path may come several times: the first time is what the target holds, unless
   * a newer layer deleted it (the sink knows which, having read the layers).
   */
  verify?(archived: AsyncIterable<ArchivedEntry>): Promise<VerifyCheck[]>;
}

/**
 * One entry of a source as its archive's manifest lists it.
 * @public
 */
export interface ArchivedEntry {
  /** Path relative to the source's root; `''` is the root. */
  readonly path: string;
  /** What the entry is. */
  readonly type: EntryType;
  /** Size of a file's body in bytes. */
  readonly size: number;
  /** SHA-256 of the body, hex. */
  readonly sha256: string;
  /** Permission bits as archived, before a restorer masks any. */
  readonly mode?: number;
  /** Modification time as archived, to the second. */
  readonly mtime?: Date;
  /** Where a symbolic link points, as archived. */
  readonly linkTarget?: string;
}

/**
 * One check run on a restored target, with what it counted and every problem it found.
 * @public
 */
export interface VerifyCheck {
  /** What was checked, such as `PRAGMA integrity_check` or `file contents`. */
  readonly name: string;
  /** What was counted, such as `{ tables: 12, rows: 10000 }`. */
  readonly figures: Readonly<Record<string, number>>;
  /** What was wrong, one sentence each; empty when the check passed. */
  readonly problems: readonly string[];
}

/**
 * Where throwaway targets are made, for `verifyBackup` and restore drills.
 * @public
 */
export interface ScratchSpace {
  /** A private, empty folder, removed afterwards with everything in it. */
  readonly dir: string;
  /** Per source kind, where else throwaway targets may go, e.g. `{ postgres: connection }`. */
  readonly servers: Readonly<Record<string, unknown>>;
}

/**
 * A throwaway target and how to get rid of it.
 * @public
 */
export interface ScratchTarget {
  /** A target as a user would pass it to `Database.restore`. */
  readonly target: unknown;
  /** Removes the target and everything restored into it. */
  remove(): Promise<void>;
}

/**
 * Restores the entries of one source kind.
 * @public
 */
export interface Restorer<Target = unknown> {
  /** The source kind it restores. */
  readonly kind: string;
  /** Validates a user-supplied target, throwing `INVALID_OPTIONS`. */
  parseTarget(target: unknown, sourceName: string): Target;
  /** Throws `TARGET_NOT_EMPTY` if the target holds data; writes nothing. */
  check(target: Target): Promise<void>;
  /** Creates the staging location beside the target. */
  begin(target: Target, signal: AbortSignal, intent?: RestoreIntent): Promise<RestoreSink>;
  /** The folder the staging copy goes in, beside the target; the restore journal may be kept there. */
  stagingFolder?(target: Target): string;
  /**
   * Finds the staging copy that `staged` described, left by a restore interrupted between two
   * commits: returns a sink whose `commit` moves it into place (its `abort` removes it), or
   * `undefined` when there is no staging copy left because it was committed already.
   */
  resume?(target: Target, staged: unknown, signal: AbortSignal): Promise<RestoreSink | undefined>;
  /** Makes a missing target to restore into once and remove: for `verifyBackup` and restore drills. */
  scratch?(space: ScratchSpace, sourceName: string): Promise<ScratchTarget>;
}

/**
 * An object a destination holds.
 * @public
 */
export interface StoredObject {
  /** The object's name, a single path component. */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** When it was committed. */
  readonly modifiedAt: Date;
}

/**
 * An object being written; invisible to `list` and `open` until committed.
 * @public
 */
export interface Upload {
  /** Where the bytes go; end it, then call `commit`. */
  readonly stream: Writable;
  /**
   * Makes the object durable and visible, all at once. Call after `stream` has finished. Never
   * replaces a committed object: throws `ALREADY_EXISTS` if one of that name exists.
   */
  commit(): Promise<void>;
  /** Discards everything written. */
  abort(): Promise<void>;
}

/**
 * What a destination can do; the engine adapts to it. Every destination writes objects whole or
 * not at all: that is part of the {@link Upload} contract, not a capability.
 * @public
 */
export interface DestinationCapabilities {
  /**
   * Objects stay invisible until `commit()`. Without it (S3) an object appears when its stream
   * ends, and `abort()` after that deletes it. A backup to several destinations commits those
   * without it first, so that a failure there never makes a copy appear on the others.
   */
  readonly deferredCommit: boolean;
}

/**
 * Part of an object to read (see {@link Destination.open}): `length` bytes from `offset`.
 * @public
 */
export interface ReadRange {
  /** The first byte to read, from 0; default 0. */
  readonly offset?: number;
  /** How many bytes, at least 1; default: to the end of the object. */
  readonly length?: number;
}

/**
 * A place archives are stored: a flat namespace of named objects.
 * @public
 */
export interface Destination {
  /** The adapter kind, such as `directory` or `memory`. */
  readonly kind: string;
  /** Names the destination in messages, for example `directory /backups`. */
  readonly description: string;
  /** What it can do. */
  readonly capabilities: DestinationCapabilities;
  /** Starts writing an object; it stays invisible until committed. */
  create(name: string): Promise<Upload>;
  /**
   * Reads a committed object, or with `range` only part of it (a range running past the end
   * reads the bytes there are, possibly none). Throws `NOT_FOUND` if there is no such object.
   */
  open(name: string, range?: ReadRange): Promise<Readable>;
  /**
   * Committed objects whose names start with `prefix`, in no particular order. Throws `NOT_FOUND`
   * if the destination itself does not exist (a missing folder); an existing empty one lists nothing.
   */
  list(prefix?: string): AsyncIterable<StoredObject>;
  /** Throws `NOT_FOUND` if there is no such object. */
  remove(name: string): Promise<void>;
  /**
   * Removes what interrupted uploads left behind (temporary files, incomplete multipart uploads)
   * whose writers are gone, never what a live writer still uses; returns what it removed.
   * `prune` calls it.
   */
  removeLeftovers?(): Promise<string[]>;
  /**
   * What `removeLeftovers` would remove now, removing nothing: for `prune`'s dry run. A
   * destination with `removeLeftovers` should have it, or a dry run reports no leftovers.
   */
  listLeftovers?(): Promise<string[]>;
  /**
   * Takes the lease `name` (one per destination and name), so that one process of a fleet backs up
   * at a time: throws `LEASE_HELD` when another holder's lease has not expired, writing nothing.
   * Taking an expired or released lease gives a larger {@link Lease.token} than any before it.
   * Destinations without it cannot coordinate a fleet; `startBackup({ lease })` refuses them.
   */
  lease?(name: string, options: LeaseOptions): Promise<Lease>;
}

/**
 * What {@link Destination.lease} is asked for.
 * @public
 */
export interface LeaseOptions {
  /** How long the lease lasts from each take or renewal, in milliseconds. */
  readonly ttlMs: number;
  /** Who asks, for people reading a `LEASE_HELD` message, such as `host db-1, pid 4242`. */
  readonly holder: string;
}

/**
 * A lease a destination gave: a fencing token, not a mutex. It is kept by renewing it before it
 * expires, and a holder must `check()` that it is still its own right before doing what the lease
 * guards. Its methods are never called concurrently.
 * @public
 */
export interface Lease {
  /** The fencing token: larger than that of every earlier holder of this lease. */
  readonly token: number;
  /** Extends the lease by its ttl from now; throws `LEASE_LOST` if it is no longer this holder's. */
  renew(): Promise<void>;
  /**
   * Throws `LEASE_LOST` if the lease is no longer this holder's: another took it, or its ttl ran
   * out since it was last taken or renewed (measured on this process's monotonic clock), whether
   * or not another took it yet.
   */
  check(): Promise<void>;
  /** Gives the lease up at once if it is still this holder's; never touches another holder's. */
  release(): Promise<void>;
}

/**
 * How the `backupkit` command line spells a source kind: `--<kind> name=value` for `backup` (a
 * source) and `restore` (a target), and `--scratch-<kind> value` for `verify --level restore`.
 * @public
 */
export interface SourceKindCli<Target = unknown> {
  /** What follows `name=` in `--<kind> name=value`, for usage messages: `path`, `dir`, `url`. */
  readonly value: string;
  /** `backup`'s help line for `--<kind> <name=value>`, such as `a SQLite database file`. */
  readonly sourceHelp: string;
  /** `restore`'s help line for `--<kind> <name=value>`, such as `restore the SQLite source <name> to this file`. */
  readonly targetHelp: string;
  /** The source `--<kind> name=value` names; `options` holds this kind's own `flags`, as given. */
  source(name: string, value: string, options: SourceKindCliOptions): Source;
  /** The restore target `--<kind> name=value` names. */
  target(name: string, value: string, options: SourceKindCliOptions): Target;
  /**
   * Flags that apply to every `--<kind>` source and target of a command line, such as PostgreSQL's
   * `--jobs`, by name: what follows the flag in its help (`n`) and its help line. A line break in
   * any help text starts an indented continuation line.
   */
  readonly flags?: Readonly<Record<string, { readonly value: string; readonly help: string }>>;
  /** Reads `--scratch-<kind> value`: the server `verify --level restore` makes throwaway targets on. */
  scratchServer?(value: string): unknown;
  /** `verify`'s help line for `--scratch-<kind>`. */
  readonly scratchHelp?: string;
}

/**
 * What a {@link SourceKindCli} reads besides `name=value`.
 * @public
 */
export interface SourceKindCliOptions {
  /** The folder relative paths are relative to. */
  readonly cwd: string;
  /** This kind's own `flags` that were given, by name, as typed. */
  readonly flags: Readonly<Record<string, string>>;
}

/**
 * One source kind, as backupkit's registry holds it: whatever the facade, the restore engine,
 * `verifyBackup`, `backupkit/testing` and the command line need to know about the kind, so that
 * none of them names a kind. Built-in kinds and kinds registered with `registerSource` are alike.
 * @public
 */
export interface SourceKind<Target = unknown, Options = never> {
  /** The kind, as `Source.kind` stores it in archives; also the CLI flag `--<kind>` and a JSON config's `"kind"`. */
  readonly kind: string;
  /** Restores this kind's sources; its `scratch()` makes the throwaway targets of `verifyBackup` and restore drills. */
  readonly restorer: Restorer;
  /** The source factory, as a JSON config file calls it with the options of `{ "kind": ..., "name": ..., ... }`. */
  source(options: Options): Source;
  /**
   * Fields of the source options and of a target that are file paths, such as `path`: relative
   * ones in a config file are relative to the config file's folder.
   */
  readonly pathFields?: readonly string[];
  /** How the command line's flags name sources and targets of this kind; without it, only config files do. */
  readonly cli?: SourceKindCli<Target>;
  /** A target in a few words for people (`database app_restored`), without a secret in it. */
  describeTarget(target: Target): string;
}

/**
 * One destination kind, as backupkit's registry holds it: how the command line and config files
 * name its destinations.
 * @public
 */
export interface DestinationKind<Options = never> {
  /** The kind, as `Destination.kind`; also a JSON config's `{ "kind": ... }`. */
  readonly kind: string;
  /** URL schemes that name this kind's destinations in `--to`, `--from` and config files, such as `s3:`. */
  readonly schemes: readonly string[];
  /** How its URLs are written, for help and messages, such as `s3://bucket/prefix`; brackets mark optional parts. */
  readonly urlForm?: string;
  /** Whether a plain path (`/backups`, `./backups`) names one of this kind's destinations: one kind only. */
  readonly paths?: boolean;
  /** A destination from a URL of one of `schemes`, or from a plain path when `paths`; `cwd` resolves relative paths. */
  fromSpec?(spec: string, cwd: string): Destination;
  /** The destination factory, as a JSON config file calls it with the options of `{ "kind": ..., ... }`. */
  create(options: Options): Destination;
  /** Fields of the options that are file paths: relative ones in a config file are relative to its folder. */
  readonly pathFields?: readonly string[];
}
