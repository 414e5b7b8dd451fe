import { BackupError } from '../errors.js';

/** Object names are flat: no separators, nothing hidden, nothing that climbs out of a folder. */
export function checkObjectName(name: string): void {
  if (name === '' || name.startsWith('.') || /[/\\\0]/.test(name)) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(name)} is not a valid object name`, {
      hint: 'Object names are single path components that do not start with a dot.',
    });
  }
}
