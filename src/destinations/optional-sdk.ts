import { BackupError } from '../errors.js';

/**
 * Loads a destination's SDK, an optional peer dependency, on first use and once: the import is
 * memoised, and retried after a failure (the package may have been installed meanwhile). A missing
 * package is `DESTINATION_FAILED` with a hint that names it.
 */
export function optionalSdk<T>(load: () => Promise<T>, packageName: string, kind: string): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () =>
    (loading ??= load().catch((cause: unknown) => {
      loading = undefined;
      throw new BackupError('DESTINATION_FAILED', `The ${kind} destination could not load ${packageName}: ${(cause as Error).message}`, {
        cause,
        hint: `Install it next to backupkit: npm install ${packageName}`,
      });
    }));
}
