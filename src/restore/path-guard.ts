import { BackupError } from '../errors.js';

/**
 * Normalises an archive entry's name and refuses anything that could land outside the restore
 * target: absolute paths, `..`, drive letters, UNC and backslash paths, NUL bytes. tar-stream
 * passes all of these through, so this is the only line of defence. Link targets are not checked
 * here: a link's target is data, and restorers create links last and never write through one.
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
