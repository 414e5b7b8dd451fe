/**
 * Signed archives: a detached OpenPGP signature over the exact bytes of `manifest.ndjson`, stored
 * as the entry `manifest.ndjson.sig` right after it. The manifest lists every entry's SHA-256,
 * `header.json` first (name, creation time, sources), so the signature binds the whole archive;
 * `gpg --verify manifest.ndjson.sig manifest.ndjson` checks it by hand (docs/SECURITY.md).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type * as openpgp from 'openpgp';
import { BackupError } from '../errors.js';
import { readLimited } from '../util/streams.js';
import type { ArchiveHeader } from './format.js';
import { dateFromArchiveName } from './names.js';
import { loadOpenpgp } from './openpgp.js';

export const SIGNATURE_PATH = 'manifest.ndjson.sig';

/** An armoured signature is a few hundred bytes per key; anything huge is not one. */
const MAX_SIGNATURE_BYTES = 64 * 1024;

/**
 * Sign a backup with an OpenPGP key: a restore or `verifyBackup` given `verifySignature` then
 * refuses any archive this key did not sign.
 * @public
 */
export interface SignOptions {
  /** An ASCII-armoured OpenPGP v4 private key (Ed25519 or RSA) that can sign. */
  privateKey: string;
  /** The passphrase protecting `privateKey`, if any. */
  passphrase?: string;
}

/**
 * Refuse any backup that is not signed by one of these keys, before anything is committed.
 * @public
 */
export interface VerifySignatureOptions {
  /** ASCII-armoured OpenPGP public keys; a signature by any one of them is accepted. */
  publicKeys: readonly string[];
}

/** An unlocked signing key, checked before a byte is written. */
export interface Signer {
  /** The primary key's fingerprint, for the header and the sidecar; never a secret. */
  readonly fingerprint: string;
  /** An armoured detached signature of `data`. */
  sign(data: Readable): Promise<Buffer>;
}

/** The hints of signing's errors, exported so that the CLI can word them with its flags. */
export const SIGNATURE_HINTS = {
  invalidSign: 'Check `sign`: an armoured OpenPGP v4 private key that can sign, and its passphrase.',
  signKeyPassphrase: 'Pass the passphrase of the signing key as `sign.passphrase`.',
  invalidPublicKeys: 'Check `verifySignature.publicKeys`: armoured OpenPGP public keys.',
} as const;

export async function prepareSigner(options: SignOptions): Promise<Signer> {
  const invalid = (message: string, cause?: unknown) => new BackupError('INVALID_OPTIONS', message, { cause, hint: SIGNATURE_HINTS.invalidSign });
  if (typeof options?.privateKey !== 'string') throw invalid('`sign.privateKey` must be an armoured OpenPGP private key');
  const openpgp = await loadOpenpgp();
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: options.privateKey });
  } catch (cause) {
    throw invalid('`sign.privateKey` is not an armoured OpenPGP private key', cause);
  }
  const fingerprint = key.getFingerprint();
  if (key.keyPacket.version !== 4) throw invalid(`The signing key ${fingerprint} is a v${key.keyPacket.version} key; GnuPG 2.2 cannot verify its signatures. Use a v4 key`);
  if (!key.isDecrypted()) {
    const hint = SIGNATURE_HINTS.signKeyPassphrase;
    if (options.passphrase === undefined) throw new BackupError('WRONG_KEY', `The signing key ${fingerprint} is protected by a passphrase, and none was given`, { hint });
    try {
      key = await openpgp.decryptKey({ privateKey: key, passphrase: options.passphrase });
    } catch (cause) {
      throw new BackupError('WRONG_KEY', `The passphrase does not unlock the signing key ${fingerprint}`, { cause, hint });
    }
  }
  await key.getSigningKey().catch((cause: unknown) => {
    throw invalid(`The key ${fingerprint} cannot sign: ${(cause as Error).message}`, cause);
  });
  const signingKey = key;
  return {
    fingerprint,
    async sign(data) {
      const message = await openpgp.createMessage({ binary: Readable.toWeb(data) as ReadableStream<Uint8Array> });
      const signature = await openpgp.sign({ message, signingKeys: signingKey, detached: true, format: 'armored' });
      let armored = '';
      await consume(signature as unknown as string | ReadableStream<string>, (piece) => (armored += piece));
      return Buffer.from(armored);
    },
  };
}

/**
 * Checks a restore's archive against the keys the user trusts: the manifest's bytes are spooled to a
 * private file as they are read (memory stays flat), and checked once the signature after them
 * arrives. Without keys, a signature is read and ignored.
 */
export class SignatureCheck {
  #keys: openpgp.PublicKey[] = [];
  #spool: { folder: string; path: string; handle: FileHandle } | undefined;
  #signature: Buffer | undefined;

  private constructor() {}

  /** Parses the trusted keys before anything is read: a bad key is a usage error, never a refusal. */
  static async create(options: VerifySignatureOptions | undefined): Promise<SignatureCheck> {
    const check = new SignatureCheck();
    if (options === undefined) return check;
    const invalid = (message: string, cause?: unknown) => new BackupError('INVALID_OPTIONS', message, { cause, hint: SIGNATURE_HINTS.invalidPublicKeys });
    if (!Array.isArray(options.publicKeys) || options.publicKeys.length === 0) throw invalid('`verifySignature.publicKeys` must list at least one key');
    const openpgp = await loadOpenpgp();
    for (const [index, armoredKey] of options.publicKeys.entries()) {
      try {
        check.#keys.push((await openpgp.readKey({ armoredKey: armoredKey as string })).toPublic());
      } catch (cause) {
        throw invalid(`Verification key ${index + 1} is not an armoured OpenPGP key`, cause);
      }
    }
    return check;
  }

  /** Whether a signature must be present and valid. */
  get required(): boolean {
    return this.#keys.length > 0;
  }

  /** Whether the signature entry has been read. */
  get signatureRead(): boolean {
    return this.#signature !== undefined;
  }

  /** The manifest's body, passed through; its bytes are kept for the signature check when required. */
  async *manifest(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    if (!this.required) return yield* body;
    const folder = await mkdtemp(join(tmpdir(), 'backupkit-signed-'));
    const path = join(folder, 'manifest.ndjson');
    this.#spool = { folder, path, handle: await open(path, 'wx', 0o600) };
    for await (const chunk of body) {
      await this.#spool.handle.write(chunk);
      yield chunk;
    }
  }

  /** Reads the signature entry. */
  async readSignature(body: AsyncIterable<Uint8Array>): Promise<void> {
    this.#signature = await readLimited(body, MAX_SIGNATURE_BYTES, () => refused(`${SIGNATURE_PATH} is larger than ${MAX_SIGNATURE_BYTES} bytes; it is not a signature`));
  }

  /**
   * After the manifest was verified: when keys were given, the signature must be made by one of
   * them over the manifest read, and the signed header must match the archive's name. Returns the
   * fingerprint of the key that signed, or undefined when nothing was checked.
   */
  async check(header: ArchiveHeader, archiveName: string): Promise<string | undefined> {
    if (!this.required) {
      if (header.signature && !this.#signature) throw new BackupError('CORRUPT_ARCHIVE', `${archiveName} says it is signed but holds no ${SIGNATURE_PATH}: it is truncated or damaged`);
      return undefined;
    }
    if (!this.#signature || !this.#spool) throw refused(`${archiveName} is not signed, and a signature by ${this.#describeKeys()} is required`);
    const openpgp = await loadOpenpgp();
    let signature: openpgp.Signature;
    try {
      signature = await openpgp.readSignature({ armoredSignature: this.#signature.toString('utf8') });
    } catch (cause) {
      throw refused(`${SIGNATURE_PATH} in ${archiveName} is not an OpenPGP signature: ${(cause as Error).message}`, cause);
    }
    await this.#spool.handle.close();
    const message = await openpgp.createMessage({ binary: Readable.toWeb(createReadStream(this.#spool.path)) as ReadableStream<Uint8Array> });
    const { data, signatures } = await openpgp.verify({ message, signature, verificationKeys: this.#keys, format: 'binary' });
    await consume(data as unknown as ReadableStream<Uint8Array>, () => {}); // the signatures settle once the data is read
    const failures: string[] = [];
    for (const { keyID, verified } of signatures) {
      const signer = this.#keys.find((key) => key.getKeys(keyID).length > 0);
      try {
        await verified;
      } catch (cause) {
        failures.push(signer ? `the signature by ${signer.getFingerprint()} does not match the manifest (${(cause as Error).message})` : `it is signed by key ID ${keyID.toHex()}, which is not one of the keys given`);
        continue;
      }
      if (signer) {
        this.#checkNameAndTime(header, archiveName);
        return signer.getFingerprint();
      }
    }
    throw refused(`${archiveName} is refused: ${failures.join('; ') || 'its signature holds no signature packet'}`);
  }

  async dispose(): Promise<void> {
    if (!this.#spool) return;
    await this.#spool.handle.close().catch(() => {}); // closed already by check()
    await rm(this.#spool.folder, { recursive: true, force: true });
  }

  /** A signed old archive stored under a newer backup name would pass for the newest backup. */
  #checkNameAndTime(header: ArchiveHeader, archiveName: string): void {
    const named = dateFromArchiveName(archiveName);
    const created = Math.floor(Date.parse(header.createdAt) / 1000) * 1000;
    if (named !== undefined && named.getTime() !== created) throw refused(`${archiveName} holds a backup signed as made at ${header.createdAt} (${header.name}): its name was changed`);
  }

  #describeKeys(): string {
    return this.#keys.length === 1 ? `the key ${this.#keys[0]!.getFingerprint()}` : `one of ${this.#keys.length} keys given`;
  }
}

/**
 * Reads what openpgp returns to its end, piece by piece, with a reader: async iteration of its
 * streams fails ("ReadableStream is locked").
 */
async function consume<T>(output: T | ReadableStream<T>, onPiece: (piece: T) => void): Promise<void> {
  if (!(output instanceof ReadableStream)) return onPiece(output);
  const reader = output.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    onPiece(value);
  }
}

function refused(message: string, cause?: unknown): BackupError {
  return new BackupError('SIGNATURE_INVALID', message, { cause });
}
