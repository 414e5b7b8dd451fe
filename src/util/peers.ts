/**
 * Optional peer dependencies: the SDK of an adapter or feature is imported the first time that
 * adapter or feature is used, so an application pays (install size, import time, memory) only
 * for what it uses. One loader per package, each memoised.
 */
import { BackupError } from '../errors.js';

/** An optional peer dependency, and what needs it. */
export interface Peer {
  /** The npm package. */
  readonly name: string;
  /** What needs it, as the subject of a sentence: `PostgreSQL sources`. */
  readonly feature: string;
  /** Every package the feature needs, for the `npm install` line of the hint. */
  readonly install: readonly string[];
}

/** A loader that imports `peer` once, on its first call; a failure is `MISSING_DEPENDENCY`. */
export function optionalPeer<T>(peer: Peer, load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () =>
    (loading ??= load().catch((cause: unknown) => {
      loading = undefined; // installed meanwhile: the next call tries again
      throw missingPeer(peer, cause);
    }));
}

/**
 * The same for the few synchronous call sites (options checked when a source is created):
 * `load` uses `require`, which Node.js serves synchronously.
 */
export function optionalPeerSync<T>(peer: Peer, load: () => T): () => T {
  let loaded: { module: T } | undefined;
  return () => {
    try {
      return (loaded ??= { module: load() }).module;
    } catch (cause) {
      throw missingPeer(peer, cause);
    }
  };
}

/**
 * Checks that `peer` is installed without importing it: for a feature whose heavy work runs on a
 * worker thread, so that the main thread neither compiles the package nor learns late that it is
 * missing.
 */
export function checkPeerInstalled(peer: Peer): void {
  try {
    import.meta.resolve(peer.name);
  } catch (cause) {
    throw missingPeer(peer, cause);
  }
}

function missingPeer({ name, feature, install }: Peer, cause: unknown): BackupError {
  const code = (cause as { code?: unknown } | undefined)?.code;
  const why = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' ? 'is not installed' : `could not be loaded: ${(cause as Error).message}`;
  return new BackupError('MISSING_DEPENDENCY', `${feature} need the package ${name}, an optional peer dependency of backupkit, which ${why}`, {
    cause,
    hint: `Install it next to backupkit: npm install ${install.join(' ')}`,
  });
}
