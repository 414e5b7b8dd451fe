import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { BackupError } from '../../errors.js';
import type { DestinationKind } from '../../types.js';
import { ftp, parseFtpUrl, type FtpOptions } from './index.js';

/**
 * The FTP kind: `ftp://user@host:port/path`, `ftps://user@host:port/path?ca=file` (explicit FTPS),
 * `{ "kind": "ftp", "host": ... }`. The password never comes from the URL: it is read from
 * `BACKUPKIT_FTP_PASSWORD`.
 */
export const ftpKind: DestinationKind<FtpOptions> = {
  kind: 'ftp',
  schemes: ['ftp:', 'ftps:'],
  urlForm: 'ftp[s]://user@host[:port]/path[?ca=file]',
  fromSpec(spec, cwd) {
    const parts = parseFtpUrl(spec);
    const ca = new URL(spec).searchParams.get('ca'); // parseFtpUrl has checked it is a URL
    const password = process.env['BACKUPKIT_FTP_PASSWORD'];
    if (password === undefined) {
      throw new BackupError('INVALID_OPTIONS', `${spec}: an FTP destination needs a password`, { hint: 'Set BACKUPKIT_FTP_PASSWORD.' });
    }
    if (ca !== null && !parts.secure) throw new BackupError('INVALID_OPTIONS', `${spec}: ?ca= is for ftps:// URLs, where the certificate is checked`);
    return ftp({ ...parts, password, ...(ca === null ? {} : { ca: readCa(resolve(cwd, ca.replace(/^~(?=\/)/, homedir()))) }) });
  },
  create: ftp,
};

/** A certificate file is a few kilobytes, read once when the command line starts. */
function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `The CA certificate file ${path} cannot be read: ${(cause as Error).message}`, { cause });
  }
}
