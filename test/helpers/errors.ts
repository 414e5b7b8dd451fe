import assert from 'node:assert/strict';
import { BackupError, type BackupErrorCode } from '../../src/index.js';

/** Asserts that `promise` rejects with a BackupError of `code` that carries a hint. */
export async function rejectsWithCode(promise: PromiseLike<unknown>, code: BackupErrorCode, message?: RegExp): Promise<BackupError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof BackupError, `expected a BackupError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    assert.ok(error.hint.length > 0, 'a BackupError carries a hint');
    if (message) assert.match(error.message, message);
    return error;
  }
  assert.fail(`expected a rejection with ${code}`);
}
