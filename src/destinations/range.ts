import { BackupError } from '../errors.js';
import type { ReadRange } from '../types.js';

/** A checked {@link ReadRange}: bytes `start` to `end` (exclusive; undefined: to the object's end). */
export interface ByteRange {
  readonly start: number;
  readonly end: number | undefined;
}

/** Refuses a range no destination could serve the same way: negative, fractional or empty. */
export function checkRange(range: ReadRange | undefined): ByteRange {
  const { offset = 0, length } = range ?? {};
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalid(`offset ${String(offset)}`);
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 1)) throw invalid(`length ${String(length)}`);
  return { start: offset, end: length === undefined ? undefined : offset + length };
}

function invalid(what: string): BackupError {
  return new BackupError('INVALID_OPTIONS', `A read range's ${what} is not valid`, {
    hint: '`offset` is a whole number of bytes from 0, `length` a whole number from 1; leave `length` out to read to the end.',
  });
}
