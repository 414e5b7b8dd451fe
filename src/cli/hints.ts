import { ENCRYPTION_HINTS } from '../archive/encryption.js';
import { SIGNATURE_HINTS } from '../archive/signature.js';
import { BackupError, defaultHint } from '../errors.js';
import { CLI_DOCS } from './help.js';

/**
 * The library's hints name its options (`decrypt`, `listBackups()`); a CLI user has flags and
 * environment variables instead. Keyed by the library's hint text, so the library never knows of
 * the CLI, and a hint without an entry here is shown as the library wrote it.
 */
function cliHints(command: string | undefined): ReadonlyMap<string, string> {
  const decryptFlags = 'the passphrase in BACKUPKIT_PASSPHRASE or --passphrase-file, or the private key with --private-key-file (its passphrase in BACKUPKIT_KEY_PASSPHRASE)';
  return new Map([
    [defaultHint('INVALID_OPTIONS'), `Run \`backupkit ${command === undefined ? '' : `${command} `}--help\`, or see ${CLI_DOCS}.`],
    [defaultHint('WRONG_KEY'), `Give the key the backup was encrypted with: ${decryptFlags}.`],
    [defaultHint('NOT_FOUND'), 'Check --from and --backup: `backupkit list --from <dest>` lists the backups there.'],
    [ENCRYPTION_HINTS.invalidEncrypt, 'Give --encrypt a passphrase that is not empty (BACKUPKIT_PASSPHRASE or --passphrase-file), and --recipient files holding armoured OpenPGP v4 public keys.'],
    [ENCRYPTION_HINTS.wrongKey, `Give the key the backup was encrypted with: ${decryptFlags} (its sidecar lists the recipients' fingerprints). If it is the right one, the archive is damaged: restore another backup.`],
    [ENCRYPTION_HINTS.noDecryptKey, `Give ${decryptFlags}.`],
    [ENCRYPTION_HINTS.lockedPrivateKey, 'Put the private key\'s passphrase in BACKUPKIT_KEY_PASSPHRASE.'],
    [SIGNATURE_HINTS.invalidSign, 'Give --sign-key-file an armoured OpenPGP v4 private key that can sign (its passphrase in BACKUPKIT_SIGN_KEY_PASSPHRASE).'],
    [SIGNATURE_HINTS.signKeyPassphrase, 'Put the signing key\'s passphrase in BACKUPKIT_SIGN_KEY_PASSPHRASE.'],
    [SIGNATURE_HINTS.invalidPublicKeys, 'Give --verify-key-file files holding armoured OpenPGP public keys.'],
  ]);
}

/** The error with its hint worded for the command line, when the library's names an API option. */
export function forCommandLine(error: BackupError, command: string | undefined): BackupError {
  const hint = cliHints(command).get(error.hint);
  if (hint === undefined) return error;
  const reworded = new BackupError(error.code, error.message, { cause: error.cause, hint });
  reworded.stack = error.stack; // --verbose shows where the library threw, not this copy
  return reworded;
}
