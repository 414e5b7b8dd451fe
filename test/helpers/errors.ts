import assert from 'node:assert/strict';
import { BackupError, type BackupErrorCode } from '../../src/index.js';

/** Asserts that `promise` rejects with a BackupError of `code` that carries a hint. */
export async function rejectsWithCode(promise: PromiseLike<unknown>, code: BackupErrorCode, message?: RegExp): Promise<BackupError> {
  try {
    await promise;
  } catch (caught) {
    assert.ok(await isBackupError(caught), `expected a BackupError, got ${String(caught)}`);
    const error = caught as BackupError;
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    assert.ok(error.hint.length > 0, 'a BackupError carries a hint');
    if (message) assert.match(error.message, message);
    return error;
  }
  assert.fail(`expected a rejection with ${code}`);
}

/**
 * A BackupError of this source tree or of the built package: a kind defined outside src/ (such as
 * examples/custom-source.ts) imports `backupkit`, the built copy, as an application does, and
 * `instanceof` tells the two copies' classes apart.
 */
async function isBackupError(error: unknown): Promise<boolean> {
  if (error instanceof BackupError) return true;
  const packaged = await import('backupkit');
  return error instanceof packaged.BackupError;
}
