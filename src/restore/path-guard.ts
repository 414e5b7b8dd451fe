import { posix } from 'node:path';
import { BackupError } from '../errors.js';

/**
 * Normalises an archive entry's name and refuses anything that could land outside the restore
 * target: absolute paths, `..`, drive letters, UNC and backslash paths, NUL bytes. tar-stream
 * passes all of these through, so this is the only line of defence.
 */
export function checkEntryPath(name: string): string[] {
  const unsafe = (why: string) => new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(name)}: ${why}`);
  if (name.includes('\0')) throw unsafe('it contains a NUL byte');
  if (name.includes('\\')) throw unsafe('it contains a backslash (a Windows or UNC path)');
  if (name.startsWith('/')) throw unsafe('it is an absolute path');
  if (/^[A-Za-z]:/.test(name)) throw unsafe('it starts with a drive letter');
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw unsafe('it contains a ".." component');
  if (parts.length === 0) throw unsafe('it names no file');
  return parts;
}

/**
 * Refuses a symbolic link whose target, read as a path from the link's own folder, leaves the
 * restored tree. Targets that pass are still resolved against the real tree before commit.
 */
export function checkLinkTarget(linkPath: string, target: string): void {
  const unsafe = (why: string) =>
    new BackupError('UNSAFE_ARCHIVE', `Refusing symbolic link ${JSON.stringify(linkPath)} -> ${JSON.stringify(target)}: ${why}`);
  if (target === '' || target.includes('\0')) throw unsafe('its target is empty or holds a NUL byte');
  if (target.startsWith('/') || target.includes('\\') || /^[A-Za-z]:/.test(target)) throw unsafe('its target is absolute');
  const resolved = posix.normalize(posix.join(posix.dirname(linkPath), target));
  if (resolved === '..' || resolved.startsWith('../')) throw unsafe('its target is outside the restored tree');
}
