/**
 * OpenPGP encryption that GnuPG 2.2 (Debian's) reads and writes: AES-256, SEIPD v1 with MDC (no
 * AEAD), no OpenPGP compression (the tar is compressed already), curve25519 (legacy) or RSA keys.
 */
import type { Duplex, Readable } from 'node:stream';
import type * as openpgp from 'openpgp';
import { BackupError } from '../errors.js';
import { cryptoStage } from './crypto-stage.js';
import { checkOpenpgpInstalled, loadOpenpgp } from './openpgp.js';

/**
 * Encrypt a backup with a passphrase, to public keys, or both (any one of them opens it).
 * @public
 */
export interface EncryptOptions {
  /** A passphrase: `gpg --decrypt` asks for it. */
  passphrase?: string;
  /** ASCII-armored OpenPGP public keys (v4; curve25519 or RSA). */
  recipients?: readonly string[];
}

/**
 * How to open an encrypted backup.
 * @public
 */
export type DecryptOptions = { passphrase: string } | { privateKey: string; passphrase?: string };

/** Key feature flags (RFC 9580 §5.2.3.32) that make openpgp.js write AEAD packets. */
const FEATURE_AEAD_DRAFT = 0x02;
const FEATURE_SEIPD_V2 = 0x08;

/** Checked before any byte is written: nothing ever falls back to plaintext. */
export interface Encryption {
  readonly passwords: string[];
  readonly keys: openpgp.PublicKey[];
  /** Fingerprints of the recipients, for the header and the sidecar; never a secret. */
  readonly fingerprints: string[];
}

/** The hints of encryption's errors, exported so that the CLI can word them with its flags. */
export const ENCRYPTION_HINTS = {
  invalidEncrypt: 'Check `encrypt`: a non-empty passphrase and/or armored OpenPGP v4 public keys.',
  noDecryptKey: 'Pass `decrypt: { passphrase }` or `decrypt: { privateKey }`.',
  lockedPrivateKey: 'Pass the private key\'s passphrase as `decrypt.passphrase`.',
  wrongKey: 'Pass the passphrase or a private key the backup was encrypted with (its sidecar lists the recipients\' fingerprints). If it is the right one, the archive is damaged: restore another backup.',
} as const;

/**
 * Plaintext bytes in which an archive is recognised (a tar header's magic sits at byte 257): a
 * decryption that fails before them may be a wrong key, after them it is damage.
 */
export const DECRYPTED_HEAD_BYTES = 512;

export async function prepareEncryption(options: EncryptOptions): Promise<Encryption> {
  const invalid = (message: string, cause?: unknown) => new BackupError('INVALID_OPTIONS', message, { cause, hint: ENCRYPTION_HINTS.invalidEncrypt });
  const { passphrase, recipients = [] } = options;
  if (passphrase === undefined && recipients.length === 0) throw invalid('`encrypt` needs a passphrase or at least one recipient');
  // Its value is never quoted: it is a secret even when it has the wrong type.
  if (passphrase !== undefined && typeof passphrase !== 'string') throw invalid(`The encryption passphrase must be a string, not a ${typeof passphrase}`);
  if (passphrase === '') throw invalid('The encryption passphrase is empty');
  const passwords = passphrase === undefined ? [] : [passphrase];
  // A passphrase alone needs openpgp.js on the worker thread only.
  if (recipients.length === 0) {
    checkOpenpgpInstalled();
    return { passwords, keys: [], fingerprints: [] };
  }
  const openpgp = await loadOpenpgp();
  const keys: openpgp.PublicKey[] = [];
  for (const [index, armoredKey] of recipients.entries()) {
    const label = `Recipient ${index + 1}`;
    let key: openpgp.Key;
    try {
      key = await openpgp.readKey({ armoredKey });
    } catch (cause) {
      throw invalid(`${label} is not an armored OpenPGP key`, cause);
    }
    if (key.keyPacket.version !== 4) throw invalid(`${label} is a v${key.keyPacket.version} key; GnuPG 2.2 cannot read what it encrypts. Use a v4 key`);
    const features = (await key.getPrimaryUser().catch(() => undefined))?.selfCertification.features?.[0] ?? 0;
    if (features & (FEATURE_AEAD_DRAFT | FEATURE_SEIPD_V2)) {
      throw invalid(`${label} (${key.getFingerprint()}) asks for AEAD encryption (generated with aeadProtect), which GnuPG 2.2 cannot read`);
    }
    await key.getEncryptionKey().catch((cause: unknown) => {
      throw invalid(`${label} (${key.getFingerprint()}) has no usable encryption key: ${(cause as Error).message}`, cause);
    });
    keys.push(key.toPublic());
  }
  return { passwords, keys, fingerprints: keys.map((key) => key.getFingerprint()) };
}

/** A stream stage that encrypts what passes through, on a worker thread. */
export function encryptor(encryption: Encryption): Duplex {
  return cryptoStage({ mode: 'encrypt', passwords: encryption.passwords, armoredKeys: encryption.keys.map((key) => key.armor()) });
}

/** Whether bytes look like an OpenPGP message, binary or armored. */
export function isOpenPgp(head: Buffer): boolean {
  return ((head[0] ?? 0) & 0x80) !== 0 || head.subarray(0, 27).toString('latin1') === '-----BEGIN PGP MESSAGE-----';
}

/**
 * Decrypts an OpenPGP message as a stream, on a worker thread. Tampering is only detected at the
 * end of the message (`allowUnauthenticatedStream`): safe here because a restore commits nothing
 * before the whole archive is read and verified.
 */
export async function decrypt(input: Readable, head: Buffer, options: DecryptOptions | undefined): Promise<Readable> {
  if (!options) {
    throw new BackupError('INVALID_OPTIONS', 'The archive is encrypted, and no passphrase or private key was given', { hint: ENCRYPTION_HINTS.noDecryptKey });
  }
  // The key is unlocked here, so that a wrong key passphrase fails before any data flows.
  const privateKey = 'privateKey' in options ? (await unlockKey(options.privateKey, options.passphrase)).armor() : undefined;
  const stage = cryptoStage({
    mode: 'decrypt',
    armored: !isBinary(head),
    passwords: 'privateKey' in options ? [] : [options.passphrase],
    armoredPrivateKey: privateKey,
  });
  input.once('error', (error) => stage.destroy(error));
  return input.pipe(stage);
}

/** Maps openpgp's errors to ours: a key that does not fit, or a damaged message. */
export function decryptionError(cause: unknown): BackupError {
  if (cause instanceof BackupError) return cause;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (/session key decryption failed|session key packet found|no decryption key packets|incorrect key passphrase/i.test(message)) return keyDoesNotFit(cause);
  return new BackupError('CORRUPT_ARCHIVE', `The encrypted archive is damaged or truncated: ${message}`, { cause });
}

/**
 * A key that does not open the archive. OpenPGP cannot tell it apart from damage to the first
 * bytes (the session key packets, the quick check): the message says both.
 */
export function keyDoesNotFit(cause: unknown): BackupError {
  if (cause instanceof BackupError) return cause;
  const message = cause instanceof Error ? cause.message : String(cause);
  return new BackupError('WRONG_KEY', `The archive cannot be decrypted with the key or passphrase given, or the archive is damaged before its first bytes: ${message}`, {
    cause,
    hint: ENCRYPTION_HINTS.wrongKey,
  });
}

function isBinary(head: Buffer): boolean {
  return ((head[0] ?? 0) & 0x80) !== 0;
}

async function unlockKey(armoredKey: string, passphrase: string | undefined): Promise<openpgp.PrivateKey> {
  const openpgp = await loadOpenpgp();
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey });
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', '`decrypt.privateKey` is not an armored OpenPGP private key', { cause });
  }
  if (key.isDecrypted()) return key;
  if (passphrase === undefined) {
    throw new BackupError('WRONG_KEY', `The private key ${key.getFingerprint()} is protected by a passphrase, and none was given`, { hint: ENCRYPTION_HINTS.lockedPrivateKey });
  }
  try {
    return await openpgp.decryptKey({ privateKey: key, passphrase });
  } catch (cause) {
    throw new BackupError('WRONG_KEY', `The passphrase does not unlock the private key ${key.getFingerprint()}`, { cause });
  }
}
