/**
 * The encrypted data of an archive, written here rather than by openpgp.js's streaming
 * `encrypt`: that copied every chunk about five times (its packet framing, the MDC's input, the
 * cipher's output, each a `concat` or `new Uint8Array`) and left them to the garbage collector,
 * which let ~100 MB of them pile up on the OpenPGP worker. Here a chunk is copied once, with its
 * framing, into a reused buffer, hashed and encrypted in one native call each, and every buffer
 * done with is freed at once.
 *
 * What it writes is what openpgp.js wrote (RFC 4880 §5.13, and what GnuPG 2.2 reads): the session
 * key packets (made by openpgp.js), then a SEIPD v1 packet: CFB with a zero IV over a random
 * prefix, one literal data packet (binary, no file name) and an MDC packet, the SHA-1 of all
 * before it. Both the literal and the SEIPD packet have partial body lengths, so the message
 * streams.
 */
import { createCipheriv, createHash, randomBytes, type Cipher, type Hash } from 'node:crypto';
import { BackupError } from '../errors.js';
import { ENCRYPTION_HINTS } from './encryption.js';

/** openpgp.js's names of the ciphers a SEIPD v1 session key may have here (GNUPG_CONFIG, or AES-128 for recipients that do not list AES-256). */
const CFB: Record<string, string> = { aes128: 'aes-128-cfb', aes192: 'aes-192-cfb', aes256: 'aes-256-cfb' };
const BLOCK_SIZE = 16;
/** New-format packet tags (RFC 4880 §4.2). */
const LITERAL_TAG = 0xc0 | 11;
const SEIPD_TAG = 0xc0 | 18;
const MDC_TAG = 0xc0 | 19;
const SEIPD_VERSION = new Uint8Array([1]);
const SHA1_BYTES = 20;
/** RFC 4880 §4.2.2.4: the first partial body length is at least 512 octets; shorter input waits. */
const MIN_FIRST_PART = 512;
const MAX_PART_POWER = 30;

/** One OpenPGP message, encrypted as its plaintext comes, chunk by chunk. */
export class SeipdEncryptor {
  readonly #cipher: Cipher;
  readonly #mdc: Hash = createHash('sha1');
  /** The session key packets, written before the first bytes; `undefined` once written. */
  #sessionKeyPackets: Uint8Array | undefined;
  /** Input not framed yet: only at the start, until there is enough for the first part. */
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** The framed plaintext of a chunk, reused. */
  #plain = Buffer.alloc(0);

  /** `sessionKeyPackets` from openpgp.js's `encryptSessionKey`, for the session key `key` of `algorithm` (openpgp.js's name). */
  constructor(sessionKeyPackets: Uint8Array, algorithm: string, key: Uint8Array) {
    const cipher = CFB[algorithm];
    // Unreachable from the public API: for SEIPD v1, openpgp.js 6 (getPreferredCipherSuite) takes
    // the AES-256 GNUPG_CONFIG asks for when every recipient lists it, else AES-128, whatever else
    // the keys prefer (CAST5, 3DES, ...); keys that ask for AEAD are refused by prepareEncryption.
    if (!cipher) throw new BackupError('INVALID_OPTIONS', `No SEIPD v1 encryption with the cipher ${algorithm}`, { hint: ENCRYPTION_HINTS.invalidEncrypt });
    this.#cipher = createCipheriv(cipher, key, Buffer.alloc(BLOCK_SIZE));
    this.#sessionKeyPackets = sessionKeyPackets;
  }

  /**
   * Encrypts `chunk` and returns the message's next bytes, in a buffer of their own; `undefined`
   * while the start is still too short. `chunk`'s whole ArrayBuffer becomes this encryptor's: the
   * bytes returned are written into it when it has room (a compressed block, in zlib's larger
   * output buffer, has), else it is freed.
   */
  update(chunk: Uint8Array): Buffer | undefined {
    this.#held.push(chunk);
    this.#heldBytes += chunk.length;
    const starting = this.#sessionKeyPackets !== undefined;
    if (starting ? LITERAL_HEAD_BYTES + this.#heldBytes < MIN_FIRST_PART : this.#heldBytes === 0) return undefined;
    const spent = this.#takeHeld();
    const body = starting ? [literalHead(), ...spent] : spent;
    const plainBytes = (starting ? BLOCK_SIZE + 3 : 0) + partsSize(body, false);
    if (this.#plain.length < plainBytes) {
      release(this.#plain.buffer);
      this.#plain = Buffer.allocUnsafeSlow(plainBytes);
    }
    const plain = this.#plain;
    let offset = starting ? writePlainStart(plain) : 0;
    offset = writeParts(plain, offset, body, false);
    this.#mdc.update(plain.subarray(0, offset));
    return this.#encrypt(plain.subarray(0, offset), false, spent);
  }

  /** The message's last bytes: the rest of the literal packet, the MDC packet, and the end of the SEIPD packet. */
  final(): Buffer {
    const starting = this.#sessionKeyPackets !== undefined;
    const spent = this.#takeHeld();
    const body = starting ? [literalHead(), ...spent] : spent;
    const plain = Buffer.allocUnsafeSlow((starting ? BLOCK_SIZE + 3 : 0) + partsSize(body, true) + 2 + SHA1_BYTES);
    let offset = starting ? writePlainStart(plain) : 0;
    offset = writeParts(plain, offset, body, true);
    release(this.#plain.buffer);
    plain[offset++] = MDC_TAG;
    plain[offset++] = SHA1_BYTES;
    // The MDC hashes its own packet header, and not its hash.
    this.#mdc.update(plain.subarray(0, offset));
    plain.set(this.#mdc.digest(), offset);
    return this.#encrypt(plain, true, spent);
  }

  #takeHeld(): Uint8Array[] {
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    return held;
  }

  /**
   * Encrypts `plain` and frames it as the SEIPD packet's next part(s), or its last, in the memory
   * of one of the `spent` input chunks that has room, freeing the others: the output then costs no
   * allocation, and none is left to the garbage collector here.
   */
  #encrypt(plain: Uint8Array, last: boolean, spent: readonly Uint8Array[]): Buffer {
    const encrypted = this.#cipher.update(plain);
    const head = this.#sessionKeyPackets;
    this.#sessionKeyPackets = undefined;
    const body = head ? [SEIPD_VERSION, encrypted] : [encrypted];
    const size = (head ? head.length + 1 : 0) + partsSize(body, last);
    const room = spent.find((chunk) => chunk.buffer.byteLength >= size);
    for (const chunk of spent) if (chunk !== room) release(chunk.buffer);
    const out = room ? Buffer.from(room.buffer, 0, size) : Buffer.allocUnsafeSlow(size);
    let offset = 0;
    if (head) {
      out.set(head);
      out[head.length] = SEIPD_TAG;
      offset = head.length + 1;
    }
    writeParts(out, offset, body, last);
    if (encrypted.byteOffset === 0 && encrypted.byteLength === encrypted.buffer.byteLength) release(encrypted.buffer);
    return out;
  }
}

/** The literal data packet's own header: binary data, no file name, the date in seconds. */
const LITERAL_HEAD_BYTES = 6;
function literalHead(): Uint8Array {
  const head = Buffer.alloc(LITERAL_HEAD_BYTES);
  head[0] = 0x62; // 'b'
  head.writeUInt32BE(Math.floor(Date.now() / 1000), 2);
  return head;
}

/** The random prefix (a block, its last two octets repeated: the quick check) and the literal packet's tag. */
function writePlainStart(plain: Buffer): number {
  randomBytes(BLOCK_SIZE).copy(plain, 0);
  plain[BLOCK_SIZE] = plain[BLOCK_SIZE - 2] as number;
  plain[BLOCK_SIZE + 1] = plain[BLOCK_SIZE - 1] as number;
  plain[BLOCK_SIZE + 2] = LITERAL_TAG;
  return BLOCK_SIZE + 3;
}

/** The bytes {@link writeParts} writes for `sources`. */
function partsSize(sources: readonly Uint8Array[], last: boolean): number {
  const total = sources.reduce((sum, source) => sum + source.length, 0);
  if (last) return lengthHeaderSize(total) + total;
  let headers = 0;
  for (let power = MAX_PART_POWER, rest = total; power >= 0; power--) {
    for (; rest >= 2 ** power; rest -= 2 ** power) headers += 1;
  }
  return headers + total;
}

/**
 * Copies `sources` into `target` at `offset` as parts of a packet's body (RFC 4880 §4.2.2): each a
 * partial length header and 2^n octets, the largest first, so that nothing is left over; or, when
 * `last`, one length header and all of them. Returns the offset after them.
 */
function writeParts(target: Buffer, offset: number, sources: readonly Uint8Array[], last: boolean): number {
  let source = 0;
  let within = 0;
  const copy = (length: number) => {
    for (let left = length; left > 0; ) {
      const from = sources[source] as Uint8Array;
      const count = Math.min(left, from.length - within);
      target.set(from.subarray(within, within + count), offset);
      offset += count;
      within += count;
      left -= count;
      if (within === from.length) [source, within] = [source + 1, 0];
    }
  };
  const total = sources.reduce((sum, from) => sum + from.length, 0);
  if (last) {
    offset = writeLengthHeader(target, offset, total);
    copy(total);
    return offset;
  }
  for (let power = MAX_PART_POWER, rest = total; power >= 0; power--) {
    for (; rest >= 2 ** power; rest -= 2 ** power) {
      target[offset++] = 0xe0 + power;
      copy(2 ** power);
    }
  }
  return offset;
}

function lengthHeaderSize(length: number): number {
  return length < 192 ? 1 : length < 8384 ? 2 : 5;
}

/** A new-format body length that is not partial: one, two or five octets. */
function writeLengthHeader(target: Buffer, offset: number, length: number): number {
  if (length < 192) {
    target[offset] = length;
    return offset + 1;
  }
  if (length < 8384) {
    target[offset] = ((length - 192) >> 8) + 192;
    target[offset + 1] = (length - 192) & 0xff;
    return offset + 2;
  }
  target[offset] = 0xff;
  target.writeUInt32BE(length, offset + 1);
  return offset + 5;
}

/**
 * Frees `buffer`'s memory now, not at some later garbage collection (`ArrayBuffer.prototype.transfer`,
 * Node.js 21 and later; on 20 the collector frees it). No view of it may be in use.
 */
function release(buffer: ArrayBufferLike): void {
  if (buffer instanceof ArrayBuffer && buffer.byteLength > 0) (buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0);
}
