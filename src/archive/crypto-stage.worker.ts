/**
 * OpenPGP on a worker thread: openpgp.js reads and writes the session key packets and decrypts
 * what is not ours to read (its buffering and copying in JavaScript stalled the host's event loop
 * for 55-220 ms per run on the main thread); the data of the archives backupkit and GnuPG write is
 * encrypted ({@link SeipdEncryptor}) and decrypted ({@link SeipdDecryptor}) a chunk per native
 * call. Data flows both ways through the worker channel, whose credits bound what is in flight.
 */
import * as openpgp from 'openpgp';
import { serveWorkerJob, type Channel } from '../util/worker-channel.js';
import { DECRYPTED_HEAD_BYTES, decryptionError, keyDoesNotFit } from './encryption.js';
import { quickCheckPrefix, quickCheck } from './quick-check.js';
import { SeipdDecryptor, decryptsHere, startsWithLiteral } from './seipd-decrypt.js';
import { SeipdEncryptor } from './seipd.js';

/** What GnuPG 2.2 (Debian's) reads: AES-256, SEIPD v1 with MDC (no AEAD), no OpenPGP compression (the tar is compressed already). */
const GNUPG_CONFIG: Partial<openpgp.Config> = {
  preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
  preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
  aeadProtect: false,
};

export type CryptoJob =
  | { mode: 'encrypt'; passwords: string[]; armoredKeys: string[] }
  | { mode: 'decrypt'; armored: boolean; passwords: string[]; armoredPrivateKey: string | undefined };

serveWorkerJob<CryptoJob, Uint8Array, Uint8Array, void>(async (job, channel) => {
  if (job.mode === 'encrypt') return encrypt(job, channel);
  const input = inputOf(channel);
  // Whether openpgp decrypts with a key that the quick check could not confirm.
  const decryption = { uncheckedKey: false, sent: 0 };
  try {
    const { chunks, own } = await decrypt(job, input, decryption);
    for await (const value of chunks) {
      // A buffer of its own, to hand over without copying.
      const chunk = own ? value : value.slice();
      decryption.sent += chunk.length;
      await channel.send(chunk, [chunk.buffer as ArrayBuffer]);
    }
  } catch (error) {
    // A key that could not be checked and fails before the archive's head is out is most likely
    // wrong: openpgp decrypts with it into noise that fails to parse or the MDC.
    const early = decryption.uncheckedKey && decryption.sent < DECRYPTED_HEAD_BYTES;
    throw early ? keyDoesNotFit(error) : decryptionError(error);
  }
});

/**
 * openpgp.js makes the session key and its packets (S2K, public-key encryption); the data, the
 * bulk of the work and of the memory, is encrypted by {@link SeipdEncryptor}.
 */
async function encrypt(job: Extract<CryptoJob, { mode: 'encrypt' }>, channel: Channel<Uint8Array, Uint8Array>): Promise<void> {
  const encryptionKeys = await Promise.all(job.armoredKeys.map((armoredKey) => openpgp.readKey({ armoredKey })));
  const sessionKey = await openpgp.generateSessionKey({ encryptionKeys, config: GNUPG_CONFIG });
  // Keys that ask for AEAD are refused before the backup starts (prepareEncryption).
  if (sessionKey.aeadAlgorithm) throw new Error(`The recipients' keys ask for AEAD (${sessionKey.aeadAlgorithm}), which GnuPG 2.2 cannot read`);
  const packets = await openpgp.encryptSessionKey({ ...sessionKey, encryptionKeys, passwords: job.passwords, format: 'binary', config: GNUPG_CONFIG });
  const encryptor = new SeipdEncryptor(packets, sessionKey.algorithm, sessionKey.data);
  for await (const chunk of channel) {
    const bytes = encryptor.update(chunk);
    if (bytes) await channel.send(bytes, [bytes.buffer as ArrayBuffer]);
  }
  const last = encryptor.final();
  await channel.send(last, [last.buffer as ArrayBuffer]);
}

/**
 * The message as openpgp reads it, and what the checks of an unchecked key need: when it ended, and
 * its bytes while they stay few (kept by reference, not copied).
 */
interface Input {
  readonly stream: ReadableStream<Uint8Array>;
  readonly ended: Promise<void>;
  /** The whole message while it is at most {@link KEPT_INPUT_BYTES}; `undefined` past that. */
  kept(): Uint8Array[] | undefined;
}

/** How much of the message is kept to check a key the quick check could not: archives of this size or less. */
const KEPT_INPUT_BYTES = 16 * 1024 * 1024;

function inputOf(channel: Channel<Uint8Array, Uint8Array>): Input {
  let kept: Uint8Array[] | undefined = [];
  let keptBytes = 0;
  let markEnded!: () => void;
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Take more input only while the output is wanted: openpgp would otherwise run ahead and
      // queue whatever it decrypted, without bound.
      await channel.writable();
      const chunk = await channel.receive();
      if (chunk === undefined) {
        markEnded();
        controller.close();
        return;
      }
      keptBytes += chunk.length;
      kept = kept && keptBytes <= KEPT_INPUT_BYTES ? [...kept, chunk] : undefined;
      controller.enqueue(chunk);
    },
  });
  return { stream, ended, kept: () => kept };
}

/** The plaintext, and whether each of its chunks is the only view of its buffer (else it is copied to be sent). */
interface Plaintext {
  readonly chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  readonly own: boolean;
}

async function decrypt(job: Extract<CryptoJob, { mode: 'decrypt' }>, { stream: input, ended, kept }: Input, decryption: { uncheckedKey: boolean }): Promise<Plaintext> {
  const message = job.armored
    ? ((await openpgp.readMessage({ armoredMessage: input.pipeThrough(new TextDecoderStream()) })) as unknown as openpgp.Message<ReadableStream<Uint8Array>>)
    : await openpgp.readMessage({ binaryMessage: input });
  const decryptionKeys = job.armoredPrivateKey ? [await openpgp.readPrivateKey({ armoredKey: job.armoredPrivateKey })] : undefined;
  const candidates = await openpgp.decryptSessionKeys({ message, ...(decryptionKeys ? { decryptionKeys } : { passwords: job.passwords }) });
  // A wrong passphrase yields a plausible session key about once in 128 tries: the quick check
  // refuses it here instead of letting it decrypt noise.
  const prefix = await quickCheckPrefix(message);
  const verdicts = candidates.map((key) => ({ key, verdict: quickCheck(key, prefix) }));
  const sessionKeys = verdicts.filter(({ verdict }) => verdict !== 'wrong').map(({ key }) => key);
  if (sessionKeys.length === 0) throw keyDoesNotFit(new Error('The session key fails the OpenPGP quick check'));
  decryption.uncheckedKey = verdicts.some(({ verdict }) => verdict === 'unknown');
  const native = nativePlaintext(message, sessionKeys, prefix);
  if (native) return { chunks: native, own: true };
  const decrypting = openpgp.decrypt({
    message,
    // A key's algorithm is null for a SEIPD v2 packet, which names its cipher itself: openpgp takes it.
    sessionKeys: sessionKeys as openpgp.SessionKey[],
    format: 'binary',
    // Tampering is reported at the end of the message: safe, as restores commit nothing before.
    config: { allowUnauthenticatedStream: true },
  });
  if (!decryption.uncheckedKey) return { chunks: (await decrypting).data as ReadableStream<Uint8Array>, own: false };
  decrypting.catch(() => {}); // it may fail after the check below decided
  // With a wrong key of a cipher the quick check cannot test (Twofish), openpgp parses noise as
  // packets, and for some noise its streaming decrypt never settles (openpgp.js 6.3), even once it
  // has read the whole message. A right key lets it settle as soon as the first packet is read; if it
  // has not when the message ended, the whole message, when it is small enough to have been kept,
  // is decrypted again in one piece, which checks the MDC before parsing anything.
  const first = await Promise.race([decrypting, ended.then(() => undefined)]);
  if (first) return { chunks: first.data as ReadableStream<Uint8Array>, own: false };
  const whole = kept();
  if (!whole) throw keyDoesNotFit(new Error('openpgp read the whole message without finding its data'));
  const bytes = Buffer.concat(whole);
  const again = job.armored ? await openpgp.readMessage({ armoredMessage: bytes.toString('utf8') }) : await openpgp.readMessage({ binaryMessage: bytes });
  const settled = await Promise.race([decrypting, openpgp.decrypt({ message: again, sessionKeys: sessionKeys as openpgp.SessionKey[], format: 'binary' })]);
  const data = settled.data as ReadableStream<Uint8Array> | Uint8Array;
  return { chunks: data instanceof Uint8Array ? [data] : data, own: false };
}

/**
 * The plaintext of the message's SEIPD v1 packet decrypted by {@link SeipdDecryptor}, when the
 * quick check confirmed one AES session key and the packet starts with literal data; undefined
 * for anything else, which openpgp.js decrypts (it has consumed nothing of the packet then).
 */
function nativePlaintext(message: openpgp.Message<ReadableStream<Uint8Array>>, sessionKeys: readonly openpgp.DecryptedSessionKey[], prefix: Uint8Array | undefined): AsyncIterable<Uint8Array> | undefined {
  const [key, ...others] = sessionKeys;
  if (!key || others.length > 0 || !prefix || !decryptsHere(key.algorithm) || quickCheck(key, prefix) !== 'fits') return undefined;
  if (!startsWithLiteral(key.algorithm!, key.data, prefix)) return undefined;
  const packet = message.packets.find((candidate) => candidate instanceof openpgp.SymEncryptedIntegrityProtectedDataPacket) as { encrypted?: unknown } | undefined;
  const encrypted = packet?.encrypted;
  if (!(encrypted instanceof ReadableStream)) return undefined;
  const decryptor = new SeipdDecryptor(key.algorithm!, key.data);
  return (async function* () {
    for await (const chunk of encrypted as ReadableStream<Uint8Array>) {
      const data = decryptor.update(chunk);
      if (data) yield data;
    }
    decryptor.final();
  })();
}
