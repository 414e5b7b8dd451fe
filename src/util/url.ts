import { BackupError } from '../errors.js';
import { redactText } from './redact.js';

/** A URL the user gave, or a usage error naming what it was meant to be (with any password in it redacted). */
export function parseUrl(text: string, what: string): URL {
  try {
    return new URL(text);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(redactText(text))} is not a URL, as ${what} must be`, { cause });
  }
}
