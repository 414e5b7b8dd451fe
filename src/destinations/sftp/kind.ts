import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { BackupError } from '../../errors.js';
import type { DestinationKind } from '../../types.js';
import { parseSftpUrl, sftp, type SftpOptions } from './index.js';

/** Keys `ssh` tries by default, in its order. */
const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/**
 * The SFTP kind: `sftp://user@host:port/path?key=file&known-hosts=file&host-key=SHA256:...`,
 * `{ "kind": "sftp", "host": ... }`. Secrets never come from the URL: the key is read from a file
 * (`key`, `BACKUPKIT_SSH_KEY_FILE`, or ssh's default `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`),
 * its passphrase from `BACKUPKIT_SSH_KEY_PASSPHRASE`, a password from `BACKUPKIT_SSH_PASSWORD`.
 */
export const sftpKind: DestinationKind<SftpOptions> = {
  kind: 'sftp',
  schemes: ['sftp:'],
  urlForm: 'sftp://user@host[:port]/path[?key=file&known-hosts=file&host-key=SHA256:...]',
  fromSpec(spec, cwd) {
    const query = new URL(spec).searchParams; // parseSftpUrl has checked it is a URL
    const parts = parseSftpUrl(spec);
    const file = (name: string) => resolve(cwd, name.replace(/^~(?=\/)/, homedir()));
    const knownHosts = query.get('known-hosts');
    const hostKey = query.get('host-key');
    const password = process.env['BACKUPKIT_SSH_PASSWORD'];
    const passphrase = process.env['BACKUPKIT_SSH_KEY_PASSPHRASE'];
    const keyFile = query.get('key') ?? process.env['BACKUPKIT_SSH_KEY_FILE'];
    const keyPath = keyFile ? file(keyFile) : password ? undefined : DEFAULT_KEYS.map((name) => join(homedir(), '.ssh', name)).find((path) => existsSync(path));
    if (keyPath === undefined && !password) {
      throw new BackupError('INVALID_OPTIONS', `${spec}: an SFTP destination needs a private key or a password`, {
        hint: 'Name the key file (?key=~/.ssh/backup or BACKUPKIT_SSH_KEY_FILE), or set BACKUPKIT_SSH_PASSWORD.',
      });
    }
    return sftp({
      ...parts,
      ...(keyPath === undefined ? {} : { privateKey: readKey(keyPath) }),
      ...(passphrase ? { passphrase } : {}),
      ...(password ? { password } : {}),
      ...(knownHosts === null ? {} : { knownHosts: file(knownHosts) }),
      // A query turns an unencoded + into a space; a fingerprint has + and no space.
      ...(hostKey === null ? {} : { hostKey: hostKey.startsWith('SHA256:') ? hostKey.replaceAll(' ', '+') : hostKey }),
    });
  },
  create: sftp,
  pathFields: ['knownHosts'],
};

/** A key file is a few hundred bytes, read once when the command line starts. */
function readKey(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `The SSH key file ${path} cannot be read: ${(cause as Error).message}`, { cause });
  }
}
